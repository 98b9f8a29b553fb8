//! What the cluster's publish script does, and the messages it writes: its text, and the
//! parsing of the positions it answers and publishes.

use roomcast_broker::{Position, Publication};
use sha1::{Digest, Sha1};

/// Gives each targeted room its next offset (and an epoch when its counter is new), keeps
/// the event in the streams of rooms with history and in the tenant namespace's recovery log,
/// then publishes `<positions>[;<log id>]\n<publication>` on the tenant's shard channel.
/// `KEYS`: the rooms' counters, their streams, then the recovery log when it is written.
/// `ARGV`: channel, counter TTL in ms, epoch for new counters, message body, the log's
/// `MAXLEN` (0: no log) and age in ms, then each room's history `MAXLEN` and age in ms.
pub(super) const PUBLISH_SCRIPT: &str = r#"
local parts = {}
local logged = tonumber(ARGV[5]) > 0
local rooms = math.floor(#KEYS / 2)
local now = nil
local function clock()
  if not now then
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return now
end
for i = 1, rooms do
  local key = KEYS[i]
  local offset = redis.call('HINCRBY', key, 'o', 1)
  local epoch = redis.call('HGET', key, 'e')
  if not epoch then
    epoch = ARGV[3]
    redis.call('HSET', key, 'e', epoch)
  end
  redis.call('PEXPIRE', key, ARGV[2])
  parts[i] = offset .. ':' .. epoch
  local keep, age = tonumber(ARGV[5 + 2 * i]), tonumber(ARGV[6 + 2 * i])
  if keep > 0 then
    local stream = KEYS[rooms + i]
    redis.call('XADD', stream, 'MAXLEN', '~', keep, '*', 'o', offset, 'p', ARGV[4])
    redis.call('XTRIM', stream, 'MINID', '~', clock() - age)
    redis.call('PEXPIRE', stream, age)
  end
end
local header = table.concat(parts, ',')
if logged then
  local log = KEYS[#KEYS]
  local age = tonumber(ARGV[6])
  local id = redis.call('XADD', log, 'MAXLEN', '~', ARGV[5], '*', 'p', ARGV[4])
  redis.call('XTRIM', log, 'MINID', '~', clock() - age)
  redis.call('PEXPIRE', log, age)
  header = header .. ';' .. id
end
redis.call('SPUBLISH', ARGV[1], header .. '\n' .. ARGV[4])
return header
"#;

/// `<offset:epoch>,...\n<publication json>` into the positions and the publication.
pub(super) fn decode(payload: &[u8]) -> Option<(Vec<Option<Position>>, Publication)> {
    let split = payload.iter().position(|&b| b == b'\n')?;
    let header = std::str::from_utf8(&payload[..split]).ok()?;
    let mut publication: Publication = serde_json::from_slice(&payload[split + 1..]).ok()?;
    let (positions, log_offset) = header_parts(header);
    publication.positions.clone_from(&positions);
    publication.log_offset = log_offset;
    Some((positions, publication))
}

/// The positions and the recovery log's id of a header (`<positions>[;<log id>]`).
pub(super) fn header_parts(header: &str) -> (Vec<Option<Position>>, Option<std::sync::Arc<str>>) {
    // The log id is last, and a stream id (`<ms>-<seq>`): an epoch (which carries a node id)
    // is never taken for it.
    match header.rsplit_once(';') {
        Some((rooms, id)) if stream_id(id).is_some() => (positions(rooms), Some(id.into())),
        _ => (positions(header), None),
    }
}

/// A stream id (`<ms>-<seq>`) as numbers, for ordering.
pub(super) fn stream_id(id: &str) -> Option<(u64, u64)> {
    let (ms, seq) = id.split_once('-')?;
    Some((ms.parse().ok()?, seq.parse().ok()?))
}

/// The stream of a room's kept events, beside its offset counter (same hash tag).
pub(super) fn stream_key(counter: &str) -> String {
    format!("{counter}:h")
}

/// The positions the publish script writes (`offset:epoch`, comma-separated, one per room).
pub(super) fn positions(header: &str) -> Vec<Option<Position>> {
    if header.is_empty() {
        return Vec::new();
    }
    header
        .split(',')
        .map(|part| {
            let (offset, epoch) = part.split_once(':')?;
            Some(Position {
                offset: offset.parse().ok()?,
                epoch: epoch.into(),
            })
        })
        .collect()
}

pub(super) fn hex_sha1(text: &str) -> String {
    Sha1::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
