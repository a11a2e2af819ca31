
$77ff3de2-1b38-542a-9aac-657d19dd9d8ftwin""chat-1:tagged:2026-03-02T09:02:00Z*ˆ¤•Í:

customer-1Bchat-1Hš
Billing
 Refund  Request 