//! Read-your-writes tokens: the last log position a request wrote in each partition it
//! touched. A query given a token answers once its view has applied every position in
//! it. The text form is `i3:120,a1:5` (`i` = omnilog.interactions, `a` = omnilog.agents,
//! then partition `:` offset), safe in a query string as is.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use omnilog_log::Topic;

/// The positions a request wrote, at most one (the highest) per partition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadToken {
    positions: BTreeMap<(Topic, u32), u64>,
}

impl ReadToken {
    /// Notes that `offset` was written in `topic`/`partition`.
    pub fn include(&mut self, topic: Topic, partition: u32, offset: u64) {
        let entry = self.positions.entry((topic, partition)).or_insert(offset);
        *entry = (*entry).max(offset);
    }

    /// Every (topic, partition, offset) the token waits for.
    pub fn positions(&self) -> impl Iterator<Item = (Topic, u32, u64)> + '_ {
        self.positions.iter().map(|(&(t, p), &o)| (t, p, o))
    }

    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }
}

fn topic_letter(topic: Topic) -> Option<char> {
    match topic {
        Topic::Interactions => Some('i'),
        Topic::Agents => Some('a'),
        Topic::DeadLetter => None,
    }
}

impl fmt::Display for ReadToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for (topic, partition, offset) in self.positions() {
            let Some(letter) = topic_letter(topic) else {
                continue;
            };
            if !first {
                f.write_str(",")?;
            }
            first = false;
            write!(f, "{letter}{partition}:{offset}")?;
        }
        Ok(())
    }
}

/// Why a token could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("not a read token ({0}); expected the token of an ingest answer, like i3:120,a1:5")]
pub struct BadToken(String);

impl FromStr for ReadToken {
    type Err = BadToken;

    fn from_str(text: &str) -> Result<Self, BadToken> {
        let mut token = ReadToken::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = || BadToken(format!("bad part {part:?}"));
            let mut chars = part.chars();
            let topic = match chars.next() {
                Some('i') => Topic::Interactions,
                Some('a') => Topic::Agents,
                _ => return Err(bad()),
            };
            let (partition, offset) = chars.as_str().split_once(':').ok_or_else(bad)?;
            let partition: u32 = partition.parse().map_err(|_| bad())?;
            let offset: u64 = offset.parse().map_err(|_| bad())?;
            token.include(topic, partition, offset);
        }
        Ok(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_reads_back_what_it_wrote() {
        let mut token = ReadToken::default();
        token.include(Topic::Interactions, 3, 120);
        token.include(Topic::Interactions, 3, 7);
        token.include(Topic::Agents, 1, 5);
        let text = token.to_string();
        assert_eq!(text, "i3:120,a1:5");
        assert_eq!(text.parse::<ReadToken>().unwrap(), token);
        assert_eq!("".parse::<ReadToken>().unwrap(), ReadToken::default());
    }

    #[test]
    fn a_malformed_token_is_refused() {
        for bad in ["x3:1", "i3", "i:1", "i3:-1", "i3:1;"] {
            assert!(bad.parse::<ReadToken>().is_err(), "{bad}");
        }
    }
}
