//! The router's decision, as a pure function of the queue view: which waiting item to
//! offer to which agent (after TaskRouter: the head of each queue to the longest-idle
//! worker who has the skills and spare capacity on the item's channel).
//!
//! The rules:
//! - items are taken in routing order across all queues ([`super::routable`]: priority
//!   descending, then first come first served);
//! - an item goes to the first candidate, longest idle first ([`super::available_agents`]),
//!   who is available, has every skill the item requires, and spare capacity on its channel;
//! - an agent who got an offer goes to the back of the line (it is no longer the longest
//!   idle), so work spreads over the agents;
//! - each offer uses one unit of that agent's spare capacity on that channel, so one round
//!   never offers more than an agent can take;
//! - an item no candidate can take is skipped, not waited for: an item needing a rare skill
//!   does not hold up the items behind it.
//!
//! The router acts on these decisions by appending `offered` (and `assigned` when agents
//! auto-accept): the decisions are events in the log, so a replay sees them.

use omnilog_events::Channel;

use super::{AgentCandidate, RoutableItem};

/// One decision: offer `interaction_id` to `agent_id`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Offer {
    pub queue: String,
    pub interaction_id: String,
    pub customer_id: Option<String>,
    pub channel: Channel,
    pub agent_id: String,
}

/// The offers of one routing round, in routing order.
pub fn plan_offers(items: &[RoutableItem], candidates: Vec<AgentCandidate>) -> Vec<Offer> {
    plan_offers_with(items, candidates, |_, _| true)
}

/// [`plan_offers`], offering an item only to agents `allowed` for it (the router uses this
/// to keep an item from going straight back to the agent who just let it go).
pub fn plan_offers_with(
    items: &[RoutableItem],
    mut candidates: Vec<AgentCandidate>,
    allowed: impl Fn(&RoutableItem, &AgentCandidate) -> bool,
) -> Vec<Offer> {
    let mut offers = Vec::new();
    for item in items {
        let taker = candidates.iter().position(|agent| {
            agent
                .spare
                .get(&item.channel)
                .is_some_and(|&spare| spare > 0)
                && item.skills.iter().all(|skill| agent.skills.contains(skill))
                && allowed(item, agent)
        });
        let Some(index) = taker else {
            continue;
        };
        // The agent just got work: it is now the least idle, so the next item goes to the
        // next longest-idle agent rather than piling onto this one.
        let mut agent = candidates.remove(index);
        if let Some(spare) = agent.spare.get_mut(&item.channel) {
            *spare -= 1;
        }
        offers.push(Offer {
            queue: item.queue.clone(),
            interaction_id: item.interaction_id.clone(),
            customer_id: item.customer_id.clone(),
            channel: item.channel,
            agent_id: agent.agent_id.clone(),
        });
        candidates.push(agent);
        if candidates
            .iter()
            .all(|agent| agent.spare.values().all(|&spare| spare == 0))
        {
            break;
        }
    }
    offers
}
