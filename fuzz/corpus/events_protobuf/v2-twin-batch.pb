
„
$2e08ee6c-2d29-5486-b471-1c1c7d7cf98ctwin"/chat-1:interaction_started:2026-03-02T09:00:00Z*£•Í:

customer-1Bchat-1H¢
‡
$023e53c7-165d-5980-b46d-a0f6d27c9200twin""chat-1:queued:2026-03-02T09:00:10Z*š£•Í:

customer-1Bchat-1H²
billingbilling
{
$5586228b-71ba-5758-b725-83cf7987db77twin"$chat-1:assigned:2026-03-02T09:00:40Z*¸£•Í:

customer-1Bchat-1HÒ
a1

$77ff3de2-1b38-542a-9aac-657d19dd9d8ftwin""chat-1:tagged:2026-03-02T09:02:00Z*ˆ¤•Í:

customer-1Bchat-1Hš
billing
refund-request
˜
$243a1bd9-dd1c-5ac2-8851-4b551c894b4ctwin"&chat-1:wrapped_up:2026-03-02T09:05:00Z*¼¥•Í:

customer-1Bchat-1H‚
a1"billing"refund-request
„
$daa3f815-ef72-5329-af10-27a0aacb33edtwin"/chat-2:interaction_started:2026-03-03T09:00:00Z*ÆšÍ:

customer-1Bchat-2H¢
…
$f83b79af-ddf6-56a8-9686-45e0b0a896b2twin""chat-2:tagged:2026-03-03T09:01:00Z*ÌÆšÍ:

customer-1Bchat-2Hš
refund-request