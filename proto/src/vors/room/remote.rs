//! A room that spans relays (docs/cluster.md): members admitted through the cluster, and the
//! members other relays host.
//!
//! A member joining through the cluster takes the SID the cluster reserved for it
//! ([`Room::join_reserved`]): the cluster already checked the password, the name and the
//! member limit over every relay, so the room checks only that the SID is free here.
//!
//! A remote member is in the roster only: the room's registered members get `ADD` for it (and
//! `MUTED`, `CHAT`, `DEL`), a member registering later gets `ADD` for it like for anyone
//! present, but it is never a recipient of media (its relay fans its copies out) and its keys
//! serve nothing but the `ADD`. Every change is idempotent, since the cluster may tell the same
//! thing twice (an event and a snapshot).

use super::{MAX_MEMBERS, Reject, Room};
use crate::vors::control::ControlOwned;
use crate::vors::keys::SessionKeys;
use crate::vors::packet::COOKIE_LEN;
use crate::vors::sid::Sid;

/// A member another relay hosts. (`SessionKeys` prints no key bytes.)
#[derive(Debug)]
pub(super) struct RemoteMember {
    username: String,
    keys: SessionKeys,
    muted: bool,
}

impl Room {
    /// Admits a member with the SID the cluster reserved for it, skipping the password, name
    /// and size checks the cluster made for the whole room. Refused (`RoomFull`) only if the
    /// SID is taken here (a local or a remote member has it) or the room holds
    /// [`MAX_MEMBERS`] already. `cookie` is what message 2 will carry.
    pub fn join_reserved(
        &mut self,
        sid: Sid,
        username: &str,
        cookie: [u8; COOKIE_LEN],
    ) -> Result<(), Reject> {
        let taken = self.member(sid).is_some() || self.remote_index(sid).is_some();
        if taken || sid == super::RESERVED_SID || self.members.len() >= MAX_MEMBERS {
            return Err(Reject::RoomFull);
        }
        self.push_member(sid, username, cookie);
        Ok(())
    }

    /// The media keys and username of local member `sid`, once it has keys: what the cluster
    /// seals into its record when it registers.
    pub fn record(&self, sid: Sid) -> Option<(SessionKeys, &str)> {
        let member = self.member(sid)?;
        Some((member.keys.clone()?, &member.username))
    }

    /// The remote members' SIDs.
    pub fn remote_sids(&self) -> impl Iterator<Item = Sid> + '_ {
        self.remote.iter().map(|(sid, _)| *sid)
    }

    /// Whether `sid` is a member another relay hosts.
    pub fn is_remote(&self, sid: Sid) -> bool {
        self.remote_index(sid).is_some()
    }

    fn remote_index(&self, sid: Sid) -> Option<usize> {
        self.remote.iter().position(|(s, _)| *s == sid)
    }

    /// A member of another relay is in the room: the registered members get `ADD` (and
    /// `MUTED` if it is muted). The same member told again changes nothing but its mute
    /// state; another record under its SID replaces it (`DEL`, then `ADD`). A SID a local
    /// member holds is refused (false): the cluster keeps SIDs unique, so this is stale news.
    pub fn add_remote(
        &mut self,
        sid: Sid,
        username: &str,
        keys: &SessionKeys,
        muted: bool,
    ) -> bool {
        if self.member(sid).is_some() || sid == super::RESERVED_SID {
            return false;
        }
        if let Some(i) = self.remote_index(sid) {
            let known = &self.remote[i].1;
            if known.username == username && known.keys == *keys {
                self.set_remote_muted(sid, muted);
                return true;
            }
            self.remove_remote(sid);
        }
        self.remote.push((
            sid,
            RemoteMember {
                username: username.to_owned(),
                keys: keys.clone(),
                muted,
            },
        ));
        let add = ControlOwned::Add {
            sid,
            username: username.to_owned(),
            key: keys.to_wire(),
        };
        self.broadcast(sid, add);
        if muted {
            self.broadcast(sid, ControlOwned::Muted(Some(sid)));
        }
        true
    }

    /// A member of another relay left: the registered members get `DEL`. False if it was not
    /// known.
    pub fn remove_remote(&mut self, sid: Sid) -> bool {
        let Some(i) = self.remote_index(sid) else {
            return false;
        };
        self.remote.swap_remove(i);
        self.broadcast(sid, ControlOwned::Del(sid));
        true
    }

    /// A member of another relay muted or unmuted itself: on a change, `MUTED`/`UNMUTED`.
    pub fn set_remote_muted(&mut self, sid: Sid, muted: bool) {
        let Some(i) = self.remote_index(sid) else {
            return;
        };
        if std::mem::replace(&mut self.remote[i].1.muted, muted) == muted {
            return;
        }
        self.broadcast(sid, super::mute_message(sid, muted));
    }

    /// A member of another relay said `msg`: `CHAT` to the registered members.
    pub fn remote_chat(&mut self, sid: Sid, msg: &str) {
        if self.is_remote(sid) {
            self.broadcast(sid, super::chat_message(sid, msg));
        }
    }

    /// What a member registering now hears of the remote members: `ADD` for each, and
    /// `MUTED` for the muted ones.
    pub(super) fn queue_remote_roster(&mut self, to: Sid) {
        for (sid, member) in &self.remote {
            self.outbox.push_back((
                to,
                ControlOwned::Add {
                    sid: *sid,
                    username: member.username.clone(),
                    key: member.keys.to_wire(),
                },
            ));
            if member.muted {
                self.outbox.push_back((to, ControlOwned::Muted(Some(*sid))));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::*;
    use crate::vors::keys::KEY_WIRE_LEN;
    use crate::vors::room::tests::{drain, ip, keys};
    use crate::vors::room::{EdgeVerdict, RoomConfig};

    /// Joins `name` under `sid` and registers it.
    fn enter(room: &mut Room, name: &str, sid: u8) -> Sid {
        let sid = Sid(sid);
        room.join_reserved(sid, name, [sid.0; COOKIE_LEN])
            .expect("join");
        assert!(room.set_keys(sid, keys(sid.0), ip()));
        let from = SocketAddr::from((ip(), 4000 + u16::from(sid.0)));
        assert_eq!(
            room.verify_datagram(Instant::now(), from, &[sid.0; COOKIE_LEN]),
            EdgeVerdict::Registered(sid)
        );
        sid
    }

    #[test]
    fn a_reserved_sid_is_taken_as_given_and_only_once() {
        let mut room = Room::new("r", RoomConfig::with_max_members(1));
        // Any lane, past the local limit: the cluster decided.
        assert!(room.join_reserved(Sid(7), "a", [1; 16]).is_ok());
        assert!(
            room.join_reserved(Sid(9), "a", [2; 16]).is_ok(),
            "name checked by the cluster"
        );
        assert_eq!(
            room.join_reserved(Sid(7), "b", [3; 16]),
            Err(Reject::RoomFull)
        );
        assert_eq!(
            room.join_reserved(Sid(255), "c", [4; 16]),
            Err(Reject::RoomFull)
        );
        assert!(room.add_remote(Sid(20), "r", &keys(20), false));
        assert_eq!(
            room.join_reserved(Sid(20), "d", [5; 16]),
            Err(Reject::RoomFull)
        );
        assert_eq!(
            room.len(),
            2,
            "remote members are not counted as local ones"
        );
    }

    #[test]
    fn remote_members_are_announced_to_local_members_and_get_no_media() {
        let mut room = Room::new("r", RoomConfig::default());
        let a = enter(&mut room, "a", 1);
        drain(&mut room);
        assert!(room.add_remote(Sid(40), "far", &keys(40), true));
        let heard = drain(&mut room);
        assert_eq!(heard.len(), 2, "{heard:?}");
        assert!(
            matches!(&heard[0], (to, ControlOwned::Add { sid: Sid(40), username, key })
            if *to == a && username == "far" && *key == [40; KEY_WIRE_LEN])
        );
        assert_eq!(heard[1], (a, ControlOwned::Muted(Some(Sid(40)))));
        // Told again: nothing new.
        assert!(room.add_remote(Sid(40), "far", &keys(40), true));
        assert!(drain(&mut room).is_empty());
        // A newcomer hears of it, and it is no recipient of media.
        let b = enter(&mut room, "b", 2);
        let to_b: Vec<ControlOwned> = drain(&mut room)
            .into_iter()
            .filter(|(to, _)| *to == b)
            .map(|(_, m)| m)
            .collect();
        assert!(
            to_b.iter()
                .any(|m| matches!(m, ControlOwned::Add { sid: Sid(40), .. }))
        );
        assert!(to_b.contains(&ControlOwned::Muted(Some(Sid(40)))));
        assert!(!room.recipients().contains(Sid(40)));
        room.set_remote_muted(Sid(40), false);
        room.remote_chat(Sid(40), "hi");
        assert!(room.remove_remote(Sid(40)));
        assert!(!room.remove_remote(Sid(40)), "once");
        let heard = drain(&mut room);
        assert_eq!(heard.len(), 6, "UNMUTED, CHAT and DEL to both: {heard:?}");
        assert!(heard.contains(&(a, ControlOwned::Del(Sid(40)))));
        assert!(heard.contains(&(b, ControlOwned::Unmuted(Some(Sid(40))))));
        // A local SID is never taken for a remote one.
        assert!(!room.add_remote(a, "ghost", &keys(9), false));
        assert!(
            room.record(a)
                .is_some_and(|(k, name)| k == keys(1) && name == "a")
        );
    }
}
