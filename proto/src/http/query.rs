//! Reading one parameter from an `application/x-www-form-urlencoded` query string.

use std::borrow::Cow;

use super::request::RequestError;

/// The first value of `name` in `query` (the part after `?`), percent-decoded with `+` as a
/// space, as browsers encode `URLSearchParams`.
///
/// `Ok(None)` when no pair has that name; a pair without `=` has the empty value. Names are
/// decoded before comparing, so `api%6Bey=x` matches `apikey`. Borrows when the text needs no
/// decoding (an apikey never does). `Err(Malformed)` when a name up to and including the
/// match, or the matched value, has a `%` not followed by two hex digits or decodes to
/// something that is not UTF-8; pairs after the match are not looked at.
pub fn query_param<'a>(query: &'a str, name: &str) -> Result<Option<Cow<'a, str>>, RequestError> {
    for pair in query.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (raw_name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        if form_decode(raw_name)? == name {
            return form_decode(raw_value).map(Some);
        }
    }
    Ok(None)
}

fn form_decode(s: &str) -> Result<Cow<'_, str>, RequestError> {
    if !s.bytes().any(|b| b == b'%' || b == b'+') {
        return Ok(Cow::Borrowed(s));
    }
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hi = bytes
                    .next()
                    .and_then(hex_value)
                    .ok_or(RequestError::Malformed)?;
                let lo = bytes
                    .next()
                    .and_then(hex_value)
                    .ok_or(RequestError::Malformed)?;
                hi << 4 | lo
            }
            other => other,
        });
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| RequestError::Malformed)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get<'a>(q: &'a str, name: &str) -> Option<Cow<'a, str>> {
        query_param(q, name).expect("well-formed query")
    }

    #[test]
    fn finds_first_value_borrowed() {
        let q = "x=1&apikey=abcdefghijklmnop&apikey=second";
        let v = get(q, "apikey").expect("present");
        assert!(matches!(v, Cow::Borrowed("abcdefghijklmnop")));
        assert_eq!(get(q, "x").as_deref(), Some("1"));
        assert_eq!(get(q, "y"), None);
        assert_eq!(get(q, "api"), None, "prefix of a name does not match");
        assert_eq!(get("", "apikey"), None);
    }

    #[test]
    fn empty_and_missing_values() {
        assert_eq!(get("apikey=", "apikey").as_deref(), Some(""));
        assert_eq!(get("apikey", "apikey").as_deref(), Some(""));
        assert_eq!(get("&&apikey=v&", "apikey").as_deref(), Some("v"));
        assert_eq!(get("a=b=c", "a").as_deref(), Some("b=c"));
    }

    #[test]
    fn decodes_percent_and_plus() {
        let v = get("msg=a+b%20c%2B%c3%a9", "msg").expect("present");
        assert!(matches!(v, Cow::Owned(_)));
        assert_eq!(v, "a b c+é");
        assert_eq!(get("api%6Bey=k", "apikey").as_deref(), Some("k"));
        assert_eq!(get("a%3Db=1", "a=b").as_deref(), Some("1"));
    }

    #[test]
    fn bad_encoding_is_an_error() {
        for q in ["k=%", "k=%4", "k=%zz", "k=%4g", "k=%ff", "k%=v", "%c3=v"] {
            assert_eq!(query_param(q, "k"), Err(RequestError::Malformed), "{q}");
        }
        // Values of other parameters are not decoded, so they cannot fail the lookup.
        assert_eq!(get("other=%zz&k=v", "k").as_deref(), Some("v"));
        assert_eq!(get("k=v&other=%", "k").as_deref(), Some("v"));
    }
}
