
$daa3f815-ef72-5329-af10-27a0aacb33edtwin"/chat-2:interaction_started:2026-03-03T09:00:00Z*ÆšÍ:

customer-1Bchat-2H¢