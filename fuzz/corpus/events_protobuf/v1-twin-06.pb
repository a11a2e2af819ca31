
$f83b79af-ddf6-56a8-9686-45e0b0a896b2twin""chat-2:tagged:2026-03-03T09:01:00Z*ÌÆšÍ:

customer-1Bchat-2Hš
Refund Request