//! TFTP wire format (RFC 1350) with option extension (RFC 2347): parsing of what clients send
//! (RRQ, WRQ, ACK, ERROR) and encoding of what the server sends (DATA, OACK, ERROR). Pure and
//! allocation-light; every length is checked, so any datagram parses to a value or an error.

/// What a client may send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Read(Transfer),
    Write(Transfer),
    Ack(u16),
    Error(u16, String),
    /// A DATA or OACK packet from a client: not something a read-only server expects.
    Unexpected(u16),
}

/// A read or write request: file name, transfer mode and options (lower-cased names).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub filename: String,
    pub mode: Mode,
    pub options: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Octet,
    Netascii,
}

/// Why a datagram could not be parsed (answered with ERROR 4, illegal operation).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("packet too short")]
    Short,
    #[error("unknown opcode {0}")]
    Opcode(u16),
    #[error("a string field is not NUL-terminated")]
    Unterminated,
    #[error("a string field is not UTF-8")]
    NotUtf8,
    #[error("unsupported transfer mode {0:?}")]
    Mode(String),
    #[error("an option has no value")]
    OptionWithoutValue,
}

pub const OP_RRQ: u16 = 1;
pub const OP_WRQ: u16 = 2;
pub const OP_DATA: u16 = 3;
pub const OP_ACK: u16 = 4;
pub const OP_ERROR: u16 = 5;
pub const OP_OACK: u16 = 6;

/// TFTP error codes (RFC 1350, RFC 2347).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum ErrorCode {
    NotDefined = 0,
    FileNotFound = 1,
    AccessViolation = 2,
    IllegalOperation = 4,
    UnknownTransferId = 5,
    OptionRefused = 8,
}

/// Splits NUL-terminated strings.
fn strings(mut b: &[u8]) -> Result<Vec<String>, ParseError> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let end = b
            .iter()
            .position(|&c| c == 0)
            .ok_or(ParseError::Unterminated)?;
        out.push(
            std::str::from_utf8(&b[..end])
                .map_err(|_| ParseError::NotUtf8)?
                .to_owned(),
        );
        b = &b[end + 1..];
    }
    Ok(out)
}

pub fn parse(b: &[u8]) -> Result<Request, ParseError> {
    if b.len() < 2 {
        return Err(ParseError::Short);
    }
    let op = u16::from_be_bytes([b[0], b[1]]);
    let rest = &b[2..];
    match op {
        OP_RRQ | OP_WRQ => {
            let fields = strings(rest)?;
            let (filename, mode) = match fields.as_slice() {
                [f, m, ..] => (f.clone(), m.to_ascii_lowercase()),
                _ => return Err(ParseError::Short),
            };
            let mode = match mode.as_str() {
                "octet" => Mode::Octet,
                "netascii" => Mode::Netascii,
                _ => return Err(ParseError::Mode(mode)),
            };
            let opts = &fields[2..];
            if opts.len() % 2 != 0 {
                return Err(ParseError::OptionWithoutValue);
            }
            let options = opts
                .chunks(2)
                .map(|kv| (kv[0].to_ascii_lowercase(), kv[1].clone()))
                .collect();
            let t = Transfer {
                filename,
                mode,
                options,
            };
            Ok(if op == OP_RRQ {
                Request::Read(t)
            } else {
                Request::Write(t)
            })
        }
        OP_ACK => match rest {
            [h, l, ..] => Ok(Request::Ack(u16::from_be_bytes([*h, *l]))),
            _ => Err(ParseError::Short),
        },
        OP_ERROR => {
            let [h, l, msg @ ..] = rest else {
                return Err(ParseError::Short);
            };
            let text = String::from_utf8_lossy(msg.split(|&c| c == 0).next().unwrap_or_default())
                .into_owned();
            Ok(Request::Error(u16::from_be_bytes([*h, *l]), text))
        }
        OP_DATA | OP_OACK => Ok(Request::Unexpected(op)),
        other => Err(ParseError::Opcode(other)),
    }
}

/// `buf` becomes a DATA packet for `block` carrying `data`.
pub fn data(buf: &mut Vec<u8>, block: u16, data: &[u8]) {
    buf.clear();
    buf.extend_from_slice(&OP_DATA.to_be_bytes());
    buf.extend_from_slice(&block.to_be_bytes());
    buf.extend_from_slice(data);
}

pub fn oack(options: &[(String, String)]) -> Vec<u8> {
    let mut b = OP_OACK.to_be_bytes().to_vec();
    for (k, v) in options {
        b.extend_from_slice(k.as_bytes());
        b.push(0);
        b.extend_from_slice(v.as_bytes());
        b.push(0);
    }
    b
}

pub fn error(code: ErrorCode, msg: &str) -> Vec<u8> {
    let mut b = OP_ERROR.to_be_bytes().to_vec();
    b.extend_from_slice(&(code as u16).to_be_bytes());
    b.extend_from_slice(msg.as_bytes());
    b.push(0);
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn read_request_with_options() {
        let pkt =
            b"\x00\x01pxelinux.0\x00octet\x00blksize\x001468\x00TSIZE\x000\x00windowsize\x008\x00";
        let Request::Read(t) = parse(pkt).unwrap() else {
            panic!()
        };
        assert_eq!(t.filename, "pxelinux.0");
        assert_eq!(t.mode, Mode::Octet);
        assert_eq!(
            t.options,
            vec![
                ("blksize".into(), "1468".into()),
                ("tsize".into(), "0".into()),
                ("windowsize".into(), "8".into())
            ]
        );
    }

    #[test]
    fn acks_errors_and_garbage() {
        assert_eq!(parse(b"\x00\x04\x12\x34").unwrap(), Request::Ack(0x1234));
        assert_eq!(
            parse(b"\x00\x05\x00\x08tsize probe\x00").unwrap(),
            Request::Error(8, "tsize probe".into())
        );
        assert_eq!(
            parse(b"\x00\x05\x00\x00").unwrap(),
            Request::Error(0, String::new())
        );
        assert_eq!(parse(b"\x00"), Err(ParseError::Short));
        assert_eq!(parse(b"\x00\x09"), Err(ParseError::Opcode(9)));
        assert_eq!(parse(b"\x00\x01file"), Err(ParseError::Unterminated));
        assert_eq!(
            parse(b"\x00\x01file\x00mail\x00"),
            Err(ParseError::Mode("mail".into()))
        );
        assert_eq!(
            parse(b"\x00\x01file\x00octet\x00blksize\x00"),
            Err(ParseError::OptionWithoutValue)
        );
        assert_eq!(parse(b"\x00\x04\x01"), Err(ParseError::Short));
    }

    #[test]
    fn encodings() {
        let mut buf = Vec::new();
        data(&mut buf, 513, b"abc");
        assert_eq!(buf, b"\x00\x03\x02\x01abc");
        assert_eq!(
            oack(&[("tsize".into(), "42".into())]),
            b"\x00\x06tsize\x0042\x00"
        );
        assert_eq!(
            error(ErrorCode::FileNotFound, "no"),
            b"\x00\x05\x00\x01no\x00"
        );
    }

    proptest! {
        #[test]
        fn any_datagram_parses_or_errors_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }
    }
}
