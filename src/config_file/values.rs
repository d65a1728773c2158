//! The file's values through the flags' own parsers (`deserialize_with` of
//! [`super::FileArgs`]), so that a key takes exactly what its flag takes.
use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Deserializer};

use crate::config::{parse_bytes, parse_listen, parse_metrics};
use crate::forward::routes::{parse_spec, UpstreamSpec};
use crate::local::{parse_block_answer, BlockAnswer};
use crate::policy::{parse_cidr, Cidr};

/// A list of strings, each through a flag's own parser.
fn de_list<'de, D: Deserializer<'de>, T>(
    d: D,
    parse: fn(&str) -> Result<T, String>,
) -> Result<Option<Vec<T>>, D::Error> {
    let items = Vec::<String>::deserialize(d)?;
    items
        .iter()
        .map(|s| parse(s).map_err(serde::de::Error::custom))
        .collect::<Result<Vec<T>, _>>()
        .map(Some)
}

pub(super) fn de_listen<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    de_list(d, parse_listen)
}

pub(super) fn de_listen_tls<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<SocketAddr>>, D::Error> {
    de_list(d, crate::config::parse_listen_tls)
}

pub(super) fn de_upstream<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<UpstreamSpec>>, D::Error> {
    de_list(d, parse_spec)
}

pub(super) fn de_paths<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<PathBuf>>, D::Error> {
    Vec::<PathBuf>::deserialize(d).map(Some)
}

pub(super) fn de_block_answer<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BlockAnswer>, D::Error> {
    let s = String::deserialize(d)?;
    parse_block_answer(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub(super) fn de_metrics<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let s = String::deserialize(d)?;
    parse_metrics(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

pub(super) fn de_allow<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<Cidr>>, D::Error> {
    de_list(d, parse_cidr)
}

/// `cache-memory = 33554432` or `cache-memory = "32M"`.
pub(super) fn de_bytes<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Octets(u64),
        Text(String),
    }
    match Size::deserialize(d) {
        Ok(Size::Octets(n)) => Ok(Some(n)),
        Ok(Size::Text(s)) => parse_bytes(&s).map(Some).map_err(serde::de::Error::custom),
        Err(_) => Err(serde::de::Error::custom(
            "expected a size such as 33554432, \"512K\", \"32M\" or \"1G\"",
        )),
    }
}

/// `threads = 2` or `threads = "auto"`.
pub(super) fn de_threads<'de, D: Deserializer<'de>>(d: D) -> Result<Option<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Threads {
        Count(u64),
        Text(String),
    }
    let text = match Threads::deserialize(d) {
        Ok(Threads::Count(n)) => n.to_string(),
        Ok(Threads::Text(s)) => s,
        Err(_) => return Err(serde::de::Error::custom("expected a number or \"auto\"")),
    };
    crate::config::parse_threads(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}
