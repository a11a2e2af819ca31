
$5586228b-71ba-5758-b725-83cf7987db77twin"$chat-1:assigned:2026-03-02T09:00:40Z*¸£•Í:

customer-1Bchat-1HÒ
a1