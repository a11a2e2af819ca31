//! `omnilog inspect`: what a data dir holds, as JSON: per topic and partition the records
//! in the log and whether any event id is stored twice; per view the active version, its
//! checkpoint and a SHA-256 digest of its canonical dump (every key and value in key
//! order). Two stores with the same digest hold the same bytes: this is how a live view
//! is compared with a clean rebuild. The log part reads a running server's log too (read-only,
//! up to what was durable); the view store is held by a running server, so then the views
//! part says so and points at `GET /v1/views`. Inspecting writes nothing in the data dir (the
//! log is opened read-only, the view store through a private mirror, see
//! [`ViewStore::open_read_only`]), so it works on a read-only or full disk. A replay's
//! output also has its identity view (`identity.bin`): its counts and a digest of what it
//! says in text and in order, so two replays' identity views compare whatever order their
//! passes folded them in.

use std::collections::HashSet;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use omnilog_log::Topic;
use omnilog_store::{StoreError, ViewStore};
use omnilog_views::IdentityView;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::replay::open_log;
use crate::serve::standard_views;

/// Options of `omnilog inspect`.
#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// A data dir (`log/` and `views/`) or a replay's output (`views/` only).
    #[arg(long, env = "OMNILOG_DATA_DIR")]
    pub data_dir: PathBuf,
}

pub async fn run(args: InspectArgs) -> anyhow::Result<()> {
    let mut answer = json!({});
    if args.data_dir.join("log").exists() {
        let log = open_log(&args.data_dir)?;
        let mut topics = serde_json::Map::new();
        for topic in [Topic::Interactions, Topic::Agents, Topic::DeadLetter] {
            let ends = log.end_offsets(topic).await?;
            let mut ids = HashSet::new();
            let mut records = 0u64;
            for (partition, end) in ends.iter().enumerate() {
                let mut from = 0;
                while from < *end {
                    let batch = log.read(topic, partition as u32, from, 8_192).await?;
                    let Some(last) = batch.last() else { break };
                    from = last.offset + 1;
                    for record in &batch {
                        records += 1;
                        ids.insert((record.partition, record.event_id));
                    }
                }
            }
            topics.insert(
                topic.name().to_owned(),
                json!({
                    "records": records,
                    "distinct_event_ids": ids.len(),
                    "partitions": ends,
                }),
            );
        }
        answer["log"] = Value::Object(topics);
    }
    let views_dir = args.data_dir.join("views");
    if views_dir.exists() {
        let store = match ViewStore::open_read_only(&views_dir) {
            Ok(store) => store,
            // A running server holds its view store; its views answer on GET /v1/views.
            Err(StoreError::Locked(dir)) => {
                answer["views"] = json!({
                    "unavailable": format!("the view store in {dir} is held by a running server; its views' positions and counts answer on GET /v1/views"),
                });
                return print(&answer);
            }
            Err(error) => {
                return Err(error)
                    .with_context(|| format!("opening the view store in {}", views_dir.display()));
            }
        };
        let mut views = Vec::new();
        for view in standard_views() {
            let name = view.name();
            let Some(version) = store.active_version(name)? else {
                continue;
            };
            let table = store.table(name, version)?;
            let checkpoint = table.checkpoint()?;
            let dump = table.dump()?;
            let mut digest = Sha256::new();
            for (key, value) in &dump {
                digest.update((key.len() as u64).to_be_bytes());
                digest.update(key);
                digest.update((value.len() as u64).to_be_bytes());
                digest.update(value);
            }
            views.push(json!({
                "view": name,
                "version": version,
                "events_applied": checkpoint.events_applied,
                "dead_letters": checkpoint.dead_letters,
                "entries": dump.len(),
                "sha256": hex::encode(digest.finalize()),
            }));
        }
        answer["views"] = Value::Array(views);
    }
    let identity_file = args.data_dir.join(crate::replay::IDENTITY_FILE);
    if identity_file.exists() {
        // A file this build cannot read (another version's layout, a damaged one) is said
        // so in its place; the log and the views are still reported.
        answer["identity"] = inspect_identity(&identity_file)
            .unwrap_or_else(|error| json!({ "unreadable": format!("{error:#}") }));
    }
    print(&answer)
}

/// A replay's saved identity view: its counts, and a digest of what it says, whatever
/// the order it was folded in (two replays of one history give the same digest, however
/// their passes cut it).
fn inspect_identity(path: &std::path::Path) -> anyhow::Result<Value> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let identity = IdentityView::from_saved_bytes(&bytes)
        .with_context(|| format!("reading {}", path.display()))?;
    let canonical = identity.canonical_bytes()?;
    Ok(json!({
        "customers": identity.customer_count(),
        "handles": identity.handle_count(),
        "events_applied": identity.events_applied(),
        "sha256": hex::encode(Sha256::digest(&canonical)),
    }))
}

fn print(answer: &Value) -> anyhow::Result<()> {
    writeln!(
        std::io::stdout(),
        "{}",
        serde_json::to_string_pretty(answer)?
    )?;
    Ok(())
}
