
$243a1bd9-dd1c-5ac2-8851-4b551c894b4ctwin"&chat-1:wrapped_up:2026-03-02T09:05:00Z*¼¥•Í:

customer-1Bchat-1H‚
a1"billing"refund-request