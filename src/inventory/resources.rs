//! What the customer resources (VMs, networks, volumes) share: public ids of the form
//! `vm-0a1b2c3d` and a free-text comment. A backend-neutral repository, implemented for SQLite
//! in `sqlite/resources.rs`.

use super::Result;
use crate::model::EventKind;

/// A customer resource kind with a public id and a comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Vm,
    Network,
    Volume,
}

impl Resource {
    /// The public id prefix (`vm-…`, `net-…`, `vol-…`).
    pub fn prefix(self) -> &'static str {
        match self {
            Resource::Vm => "vm",
            Resource::Network => "net",
            Resource::Volume => "vol",
        }
    }

    /// The kind its change events carry.
    pub fn event_kind(self) -> EventKind {
        match self {
            Resource::Vm => EventKind::Vm,
            Resource::Network => EventKind::Network,
            Resource::Volume => EventKind::Volume,
        }
    }

    /// The kind a public id names, by its prefix.
    pub fn of_id(id: &str) -> Option<Resource> {
        [Resource::Vm, Resource::Network, Resource::Volume]
            .into_iter()
            .find(|r| {
                id.strip_prefix(r.prefix())
                    .is_some_and(|rest| rest.starts_with('-'))
            })
    }
}

pub trait Resources {
    /// Whether a `kind` resource has public id `id`.
    fn public_id_taken(&self, kind: Resource, id: &str) -> Result<bool>;
    /// The comment on customer `customer`'s resource `id` (`None`: no such resource of theirs).
    fn comment(&self, kind: Resource, id: &str, customer: i64) -> Result<Option<String>>;
    /// Sets that comment; whether the resource exists.
    fn set_comment(&self, kind: Resource, id: &str, customer: i64, comment: &str) -> Result<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_id_names_its_kind_by_prefix() {
        for (id, kind) in [
            ("vm-0a1b2c3d", Some(Resource::Vm)),
            ("net-00000001", Some(Resource::Network)),
            ("vol-ffffffff", Some(Resource::Volume)),
            ("volume-1", None),
            ("vm", None),
            ("img-1", None),
            ("", None),
        ] {
            assert_eq!(Resource::of_id(id), kind, "{id}");
        }
    }
}
