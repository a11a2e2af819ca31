
$023e53c7-165d-5980-b46d-a0f6d27c9200twin""chat-1:queued:2026-03-02T09:00:10Z*š£•Í:

customer-1Bchat-1H²
billingbilling