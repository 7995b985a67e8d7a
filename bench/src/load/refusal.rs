//! What it means when a VoRS server ends a stream's handshake, said so the person running the
//! bench can act on it. A relay closes a handshake without answering for a wrong server key,
//! but also for its per-address limits and its handshake CPU budget (docs/configuration.md), and
//! a load run from one machine, every stream from one address, meets those limits first.

/// Streams from one source address past which a relay with its default limits refuses some of
/// their handshakes: `--max-handshakes-per-address` lets one address have 8 waiting at once,
/// and the bench starts up to 32 per worker together.
const SHARED_ADDRESS_STREAMS: usize = 8;

/// The per-address limits, how to lift them (flags and environment), and `--bind`.
const PER_ADDRESS: &str = "the relay's per-address limits (--max-connections-per-address, \
     --max-handshakes-per-address, --handshakes-per-minute; defaults 64, 8 and 120): start it \
     with --max-connections-per-address 0 --max-handshakes-per-address 0 \
     --handshakes-per-minute 0 --max-rooms-per-address 0 (or MOOSE_MAX_CONNECTIONS_PER_ADDRESS=0 \
     MOOSE_MAX_HANDSHAKES_PER_ADDRESS=0 MOOSE_HANDSHAKES_PER_MINUTE=0 \
     MOOSE_MAX_ROOMS_PER_ADDRESS=0), or spread the streams over source addresses with \
     --bind 127.0.0.2,127.0.0.3,...";

/// The handshake CPU budget, which refuses handshakes from any address.
const CPU_BUDGET: &str = "the relay's handshake CPU budget (--handshake-cpu-percent, default \
     25): raise it, up to 100, for a load run (MOOSE_HANDSHAKE_CPU_PERCENT)";

/// A server key that is not the relay's: message 1 does not decrypt there.
const WRONG_KEY: &str = "a wrong --pubkey: use the relay's, printed as vors_pubkey= on its \
     `listening` line (or `moose-relay pubkey < KEY_FILE`)";

/// The error of a stream whose handshake the server ended before answering (`how`: what the
/// session saw), when `sharing` streams of the run leave from this stream's source address.
pub(crate) fn handshake_ended(how: &str, sharing: usize) -> String {
    let causes = if sharing > SHARED_ADDRESS_STREAMS {
        [PER_ADDRESS, CPU_BUDGET, WRONG_KEY]
    } else {
        [WRONG_KEY, CPU_BUDGET, PER_ADDRESS]
    };
    format!(
        "the server ended the handshake ({how}); {sharing} streams leave from this stream's \
         address. Likely causes, most likely first: (1) {}; (2) {}; (3) {}",
        causes[0], causes[1], causes[2]
    )
}

/// What to change when the server refused the join with `reason` (its `ERR` text), if a
/// setting of the relay is the likely cause; empty otherwise.
pub(crate) fn join_refused_hint(reason: &str) -> &'static str {
    match reason {
        "too many rooms" => {
            " (the relay's --max-rooms-per-address: one address made that many rooms; start \
             it with --max-rooms-per-address 0, or spread the streams with --bind)"
        }
        "server full" => " (the relay's --max-rooms: raise it above the rooms of the run)",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_streams_from_one_address_name_the_per_address_limits_first() {
        let text = handshake_ended("ClosedUnanswered", 100);
        let limits = text
            .find("--max-handshakes-per-address 0")
            .expect("the fix");
        let budget = text.find("--handshake-cpu-percent").expect("the budget");
        let key = text.find("--pubkey").expect("the key");
        assert!(limits < budget && budget < key, "{text}");
        assert!(text.contains("--bind") && text.contains("MOOSE_HANDSHAKES_PER_MINUTE=0"));
        assert!(
            text.contains("100 streams leave from this stream's address"),
            "{text}"
        );
    }

    #[test]
    fn few_streams_from_one_address_name_the_key_first() {
        let text = handshake_ended("PeerClosed", 4);
        let key = text.find("--pubkey").expect("the key");
        let limits = text
            .find("--max-handshakes-per-address")
            .expect("the limits");
        assert!(key < limits, "{text}");
    }

    #[test]
    fn room_limits_name_their_flag() {
        assert!(join_refused_hint("too many rooms").contains("--max-rooms-per-address 0"));
        assert!(join_refused_hint("server full").contains("--max-rooms"));
        assert_eq!(join_refused_hint("name taken"), "");
    }
}
