//! Keyset cursors: URL-safe base64 (no padding) of a small versioned binary record holding
//! the request kind, the order, the row's exact sort key and its unique tie-break id.
//!
//! Layout (integers little-endian, strings as u32 length + UTF-8 bytes):
//! - users:    `01 01 <field> <direction> <key> <user id>` where key is an i128 for numeric
//!   orders, a string for `EMAIL` and absent for `USER_ID`;
//! - sessions: `01 02 <started_ns: i64> <session id>`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::api::{OrderDirection, UserOrder, UserOrderField};
use crate::error::QueryError;

const VERSION: u8 = 1;
const KIND_USERS: u8 = 1;
const KIND_SESSIONS: u8 = 2;

/// The sort key of a users-table row, as the cursor carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UsersKey {
    /// Every numeric order, including float orders mapped by `numbers::float_key`.
    Number(i128),
    /// `EMAIL`: the lifetime email, "" for none.
    Text(String),
    /// `USER_ID`: the key is the tie-break id itself.
    UserId,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct UsersCursor {
    pub key: UsersKey,
    pub user_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SessionsCursor {
    pub started_ns: i64,
    pub session_id: String,
}

fn field_code(field: UserOrderField) -> u8 {
    match field {
        UserOrderField::LastSeen => 0,
        UserOrderField::FirstSeen => 1,
        UserOrderField::Traces => 2,
        UserOrderField::Sessions => 3,
        UserOrderField::ErroredSessions => 4,
        UserOrderField::ErrorRate => 5,
        UserOrderField::CostSum => 6,
        UserOrderField::CostAverage => 7,
        UserOrderField::CostMedian => 8,
        UserOrderField::Tokens => 9,
        UserOrderField::UserId => 10,
        UserOrderField::Email => 11,
    }
}

fn direction_code(direction: OrderDirection) -> u8 {
    match direction {
        OrderDirection::Asc => 0,
        OrderDirection::Desc => 1,
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("ids and emails are far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

pub(crate) fn encode_users(order: UserOrder, key: &UsersKey, user_id: &str) -> String {
    let mut out = Vec::with_capacity(24 + user_id.len());
    out.extend_from_slice(&[
        VERSION,
        KIND_USERS,
        field_code(order.field),
        direction_code(order.direction),
    ]);
    match key {
        UsersKey::Number(n) => out.extend_from_slice(&n.to_le_bytes()),
        UsersKey::Text(s) => put_str(&mut out, s),
        UsersKey::UserId => {}
    }
    put_str(&mut out, user_id);
    URL_SAFE_NO_PAD.encode(out)
}

pub(crate) fn encode_sessions(started_ns: i64, session_id: &str) -> String {
    let mut out = Vec::with_capacity(14 + session_id.len());
    out.extend_from_slice(&[VERSION, KIND_SESSIONS]);
    out.extend_from_slice(&started_ns.to_le_bytes());
    put_str(&mut out, session_id);
    URL_SAFE_NO_PAD.encode(out)
}

fn bad_cursor(message: &str) -> QueryError {
    QueryError::invalid("after", message)
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QueryError> {
        if self.bytes.len() < n {
            return Err(bad_cursor("cursor is truncated"));
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], QueryError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, QueryError> {
        Ok(self.array::<1>()?[0])
    }

    fn string(&mut self) -> Result<String, QueryError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| bad_cursor("cursor is not valid"))
    }

    fn finish(&self) -> Result<(), QueryError> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            Err(bad_cursor("cursor has trailing bytes"))
        }
    }
}

fn decode_base64(cursor: &str) -> Result<Vec<u8>, QueryError> {
    URL_SAFE_NO_PAD
        .decode(cursor.as_bytes())
        .map_err(|_| bad_cursor("cursor does not decode"))
}

fn check_header(r: &mut Reader<'_>, kind: u8) -> Result<(), QueryError> {
    if r.u8()? != VERSION {
        return Err(bad_cursor("cursor version is not supported"));
    }
    if r.u8()? != kind {
        return Err(bad_cursor("cursor was made for another list"));
    }
    Ok(())
}

pub(crate) fn decode_users(cursor: &str, order: UserOrder) -> Result<UsersCursor, QueryError> {
    let bytes = decode_base64(cursor)?;
    let mut r = Reader { bytes: &bytes };
    check_header(&mut r, KIND_USERS)?;
    if r.u8()? != field_code(order.field) || r.u8()? != direction_code(order.direction) {
        return Err(bad_cursor("cursor was made for another order"));
    }
    let key = match order.field {
        UserOrderField::UserId => UsersKey::UserId,
        UserOrderField::Email => UsersKey::Text(r.string()?),
        _ => UsersKey::Number(i128::from_le_bytes(r.array()?)),
    };
    let user_id = r.string()?;
    r.finish()?;
    Ok(UsersCursor { key, user_id })
}

pub(crate) fn decode_sessions(cursor: &str) -> Result<SessionsCursor, QueryError> {
    let bytes = decode_base64(cursor)?;
    let mut r = Reader { bytes: &bytes };
    check_header(&mut r, KIND_SESSIONS)?;
    let started_ns = i64::from_le_bytes(r.array()?);
    let session_id = r.string()?;
    r.finish()?;
    Ok(SessionsCursor {
        started_ns,
        session_id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_cursors_round_trip_per_order() {
        for field in UserOrderField::ALL {
            for direction in [OrderDirection::Asc, OrderDirection::Desc] {
                let order = UserOrder::new(field, direction);
                let key = match field {
                    UserOrderField::UserId => UsersKey::UserId,
                    UserOrderField::Email => UsersKey::Text("ü@example.com".into()),
                    _ => UsersKey::Number(-42),
                };
                let cursor = encode_users(order, &key, "o'brien");
                let decoded = decode_users(&cursor, order).expect("own cursor decodes");
                assert_eq!(decoded.key, key);
                assert_eq!(decoded.user_id, "o'brien");
            }
        }
    }

    #[test]
    fn cursors_of_another_order_or_kind_are_refused() {
        let asc = UserOrder::new(UserOrderField::Traces, OrderDirection::Asc);
        let desc = UserOrder::new(UserOrderField::Traces, OrderDirection::Desc);
        let cursor = encode_users(asc, &UsersKey::Number(1), "u");
        assert_eq!(
            decode_users(&cursor, desc).map_err(|e| e.field()),
            Err("after")
        );
        let other = UserOrder::new(UserOrderField::Sessions, OrderDirection::Asc);
        assert!(decode_users(&cursor, other).is_err());
        assert!(decode_sessions(&cursor).is_err());
        let session = encode_sessions(5, "s");
        assert!(decode_users(&session, asc).is_err());
        assert_eq!(
            decode_sessions(&session),
            Ok(SessionsCursor {
                started_ns: 5,
                session_id: "s".into()
            })
        );
    }

    #[test]
    fn garbage_is_refused() {
        let order = UserOrder::default();
        for bad in [
            "",
            "!!!",
            "AAAA",
            "AQEAAQ",
            "AQEAAQAAAAAAAAAAAAAAAAAAAAAA_w",
        ] {
            assert!(decode_users(bad, order).is_err(), "{bad}");
            assert!(decode_sessions(bad).is_err(), "{bad}");
        }
        let cursor = encode_users(order, &UsersKey::Number(1), "u");
        let truncated = &cursor[..cursor.len() - 2];
        assert!(decode_users(truncated, order).is_err());
    }
}
