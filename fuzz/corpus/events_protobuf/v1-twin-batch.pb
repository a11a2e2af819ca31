
Ñ
$2e08ee6c-2d29-5486-b471-1c1c7d7cf98ctwin"/chat-1:interaction_started:2026-03-02T09:00:00Z*ê£ïÕ:

customer-1Bchat-1H¢
á
$023e53c7-165d-5980-b46d-a0f6d27c9200twin""chat-1:queued:2026-03-02T09:00:10Z*ö£ïÕ:

customer-1Bchat-1H≤
billingbilling
{
$5586228b-71ba-5758-b725-83cf7987db77twin"$chat-1:assigned:2026-03-02T09:00:40Z*∏£ïÕ:

customer-1Bchat-1H“
a1
ë
$77ff3de2-1b38-542a-9aac-657d19dd9d8ftwin""chat-1:tagged:2026-03-02T09:02:00Z*à§ïÕ:

customer-1Bchat-1Hö
Billing
 Refund  Request 
ò
$243a1bd9-dd1c-5ac2-8851-4b551c894b4ctwin"&chat-1:wrapped_up:2026-03-02T09:05:00Z*º•ïÕ:

customer-1Bchat-1HÇ
a1"billing"REFUND request
Ñ
$daa3f815-ef72-5329-af10-27a0aacb33edtwin"/chat-2:interaction_started:2026-03-03T09:00:00Z*ê∆öÕ:

customer-1Bchat-2H¢
Ö
$f83b79af-ddf6-56a8-9686-45e0b0a896b2twin""chat-2:tagged:2026-03-03T09:01:00Z*Ã∆öÕ:

customer-1Bchat-2Hö
Refund Request