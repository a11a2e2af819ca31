
$2e08ee6c-2d29-5486-b471-1c1c7d7cf98ctwin"/chat-1:interaction_started:2026-03-02T09:00:00Z*£•Í:

customer-1Bchat-1H¢