//! The catalogue as the update check reads it: product lines, models and
//! releases, in an immutable [`Catalogue`] built once per load and never
//! modified after (a change builds a new one; see [`crate::snapshot`]).

use std::collections::HashMap;
use std::sync::Arc;

use crate::domain::group::{Filter, Subject};
use crate::domain::rollout::RolloutEntry;
use crate::domain::window::Window;

use firmup_client::Sha256Digest;
use serde::Serialize;
use serde_json::value::RawValue;
use time::{Date, OffsetDateTime};

/// What kind of product a line is; it decides which terms apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProductKind {
    /// Hardware: free upgrades until the model's EOL.
    Hardware,
    /// Software: upgrades covered by a licence.
    Software,
}

impl ProductKind {
    /// Parses the stored `product_lines.kind`.
    pub fn parse(s: &str) -> Option<ProductKind> {
        match s {
            "hardware" => Some(ProductKind::Hardware),
            "software" => Some(ProductKind::Software),
            _ => None,
        }
    }
}

/// A product line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductLineInfo {
    /// Id, as in manifests.
    pub id: String,
    /// Display name (used in entitlement explanations for software).
    pub name: String,
    /// Hardware or software.
    pub kind: ProductKind,
}

/// A model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelInfo {
    /// Id.
    pub id: String,
    /// Display name (used in entitlement explanations).
    pub name: String,
    /// The product line it belongs to.
    pub product_line: String,
    /// Discontinued on this date; `None` while in production.
    pub eol: Option<Date>,
    /// Its security support period (its own, its line's or the default).
    pub support: crate::domain::support::SupportPolicy,
}

/// One image of a release, as signed in its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    /// Image name.
    pub name: String,
    /// Target slot or component.
    pub target: String,
    /// Signed length in bytes.
    pub length: u64,
    /// Signed sha256.
    pub sha256: Sha256Digest,
}

/// A signed envelope kept as raw JSON text, shared between snapshots and
/// serialised byte for byte: devices verify the exact signed bytes, so it
/// must never be parsed into a value and written back.
#[derive(Debug, Clone)]
pub struct SharedRaw(Arc<RawValue>);

impl SharedRaw {
    /// Wraps stored envelope bytes; fails unless they are UTF-8 JSON.
    /// Trailing whitespace (the signer writes a final newline) is dropped:
    /// it is outside the JSON value and not covered by any signature.
    pub fn from_bytes(bytes: &[u8]) -> Result<SharedRaw, String> {
        let text = std::str::from_utf8(bytes).map_err(|_| "envelope is not UTF-8".to_string())?;
        let raw = RawValue::from_string(text.trim_end().to_string())
            .map_err(|e| format!("envelope is not JSON: {e}"))?;
        Ok(SharedRaw(Arc::from(raw)))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }
}

impl Serialize for SharedRaw {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.as_ref().serialize(s)
    }
}

/// A release as the check path needs it (never a yanked one).
#[derive(Debug, Clone)]
pub struct ReleaseEntry {
    /// Row id.
    pub id: i64,
    /// Product line.
    pub product_line: String,
    /// Channel.
    pub channel: String,
    /// Version.
    pub version: semver::Version,
    /// Replay counter.
    pub manifest_version: u64,
    /// Anti-rollback counter.
    pub security_counter: u64,
    /// Minimum installed version needed to install it.
    pub requires: Option<semver::Version>,
    /// Hardware ids it is signed for.
    pub hw_compat: Vec<String>,
    /// Publication time (judged by the entitlement rules).
    pub published_at: OffsetDateTime,
    /// Offered to every device regardless of entitlement.
    pub free_for_all: bool,
    /// What the release is, from its signed manifest.
    pub kind: firmup_client::ReleaseKind,
    /// The envelope exactly as signed.
    pub envelope: SharedRaw,
    /// Images, as signed.
    pub images: Vec<ImageEntry>,
}

/// A release as loaded, before the snapshot drops the yanked ones.
#[derive(Debug, Clone)]
pub struct LoadedRelease {
    /// The release.
    pub entry: ReleaseEntry,
    /// When it was yanked, if it was.
    pub yanked_at: Option<OffsetDateTime>,
}

/// An immutable view of the catalogue at one generation.
#[derive(Debug, Default)]
pub struct Catalogue {
    /// The catalogue generation read before loading (see
    /// [`crate::snapshot`]; 0: never loaded).
    pub generation: u64,
    product_lines: HashMap<String, ProductLineInfo>,
    models: HashMap<String, ModelInfo>,
    hw_ids: HashMap<String, String>,
    /// product line -> channel -> releases, newest version first.
    releases: HashMap<String, HashMap<String, Vec<Arc<ReleaseEntry>>>>,
    /// image sha256 -> the one name every release (yanked ones included)
    /// gives it, or `None` when releases name it differently.
    image_names: HashMap<Sha256Digest, Option<String>>,
    /// The rollout deciding who is offered a release, by release id.
    rollouts: HashMap<i64, RolloutEntry>,
    /// Device groups by name.
    groups: HashMap<String, GroupEntry>,
    /// Some group has a maintenance window or a filter, or some rollout a
    /// group: a check must work out the device's groups.
    groups_matter: bool,
}

/// A device group as the check path needs it.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupEntry {
    /// Name.
    pub name: String,
    /// A dynamic group's filter; `None` for a static group, whose members
    /// come with the device's facts.
    pub filter: Option<Filter>,
    /// Its maintenance window.
    pub window: Option<Window>,
}

impl Catalogue {
    /// Assembles a snapshot: drops yanked releases and sorts each
    /// (product line, channel) list by version, newest first.
    pub fn assemble(
        generation: u64,
        product_lines: Vec<ProductLineInfo>,
        models: Vec<ModelInfo>,
        hw_ids: Vec<(String, String)>,
        releases: Vec<LoadedRelease>,
    ) -> Catalogue {
        let mut image_names: HashMap<Sha256Digest, Option<String>> = HashMap::new();
        for image in releases.iter().flat_map(|r| &r.entry.images) {
            image_names
                .entry(image.sha256)
                .and_modify(|known| {
                    if known.as_deref() != Some(image.name.as_str()) {
                        *known = None;
                    }
                })
                .or_insert_with(|| Some(image.name.clone()));
        }
        let mut by_line: HashMap<String, HashMap<String, Vec<Arc<ReleaseEntry>>>> = HashMap::new();
        for r in releases.into_iter().filter(|r| r.yanked_at.is_none()) {
            by_line
                .entry(r.entry.product_line.clone())
                .or_default()
                .entry(r.entry.channel.clone())
                .or_default()
                .push(Arc::new(r.entry));
        }
        for list in by_line.values_mut().flat_map(|c| c.values_mut()) {
            // Newest first by SemVer precedence (build metadata ignored;
            // publishing refuses two releases that differ only in it).
            list.sort_by(|a, b| b.version.cmp_precedence(&a.version));
        }
        Catalogue {
            generation,
            product_lines: product_lines
                .into_iter()
                .map(|p| (p.id.clone(), p))
                .collect(),
            models: models.into_iter().map(|m| (m.id.clone(), m)).collect(),
            hw_ids: hw_ids.into_iter().collect(),
            releases: by_line,
            image_names,
            rollouts: HashMap::new(),
            groups: HashMap::new(),
            groups_matter: false,
        }
    }

    /// The snapshot with its rollouts and device groups.
    pub fn with_rollouts(
        mut self,
        rollouts: Vec<RolloutEntry>,
        groups: Vec<GroupEntry>,
    ) -> Catalogue {
        self.groups_matter = groups
            .iter()
            .any(|g| g.filter.is_some() || g.window.is_some())
            || rollouts.iter().any(|r| r.group.is_some());
        self.rollouts = rollouts.into_iter().map(|r| (r.release_id, r)).collect();
        self.groups = groups.into_iter().map(|g| (g.name.clone(), g)).collect();
        self
    }

    /// The rollout deciding who is offered release `release_id`, if any.
    pub fn rollout_of(&self, release_id: i64) -> Option<&RolloutEntry> {
        self.rollouts.get(&release_id)
    }

    /// Every rollout deciding a release, by release id.
    pub fn rollouts(&self) -> &HashMap<i64, RolloutEntry> {
        &self.rollouts
    }

    /// A device group.
    pub fn group(&self, name: &str) -> Option<&GroupEntry> {
        self.groups.get(name)
    }

    /// The groups a device is in: the static ones its facts list (that
    /// still exist) and the dynamic ones whose filter it matches, by name.
    /// Empty without a look when no group could matter to a check.
    pub fn groups_of<'c>(
        &'c self,
        static_groups: &[String],
        subject: &Subject<'_>,
    ) -> Vec<&'c GroupEntry> {
        if !self.groups_matter && static_groups.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<&GroupEntry> = static_groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .filter(|g| g.filter.is_none())
            .chain(
                self.groups
                    .values()
                    .filter(|g| g.filter.as_ref().is_some_and(|f| f.matches(subject))),
            )
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The name releases give an image: `None` if no release lists it,
    /// `Some(None)` if releases name it differently, `Some(Some(name))`
    /// if all that list it agree.
    pub fn image_name(&self, sha256: &Sha256Digest) -> Option<Option<&str>> {
        self.image_names.get(sha256).map(Option::as_deref)
    }

    /// A product line.
    pub fn product_line(&self, id: &str) -> Option<&ProductLineInfo> {
        self.product_lines.get(id)
    }

    /// A model.
    pub fn model(&self, id: &str) -> Option<&ModelInfo> {
        self.models.get(id)
    }

    /// The model a hardware id belongs to.
    pub fn model_for_hw_id(&self, hw_id: &str) -> Option<&ModelInfo> {
        self.hw_ids.get(hw_id).and_then(|m| self.models.get(m))
    }

    /// The releases of a product line on a channel that are not yanked,
    /// newest version first.
    pub fn releases(&self, product_line: &str, channel: &str) -> &[Arc<ReleaseEntry>] {
        self.releases
            .get(product_line)
            .and_then(|c| c.get(channel))
            .map_or(&[], Vec::as_slice)
    }

    /// A release by row id (to reuse its envelope on the next load).
    pub fn release_by_id(&self, id: i64) -> Option<&Arc<ReleaseEntry>> {
        self.releases
            .values()
            .flat_map(|c| c.values())
            .flatten()
            .find(|r| r.id == id)
    }

    /// Envelopes by release id, for the next load to reuse: an envelope is
    /// immutable once stored, so only new releases need their bytes read.
    pub fn envelopes(&self) -> HashMap<i64, SharedRaw> {
        self.releases
            .values()
            .flat_map(|c| c.values())
            .flatten()
            .map(|r| (r.id, r.envelope.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: &str, channel: &str, version: &str, id: i64) -> ReleaseEntry {
        ReleaseEntry {
            id,
            product_line: line.into(),
            channel: channel.into(),
            version: version.parse().unwrap(),
            manifest_version: 1,
            security_counter: 0,
            requires: None,
            hw_compat: vec!["hw-1".into()],
            published_at: OffsetDateTime::UNIX_EPOCH,
            free_for_all: false,
            kind: firmup_client::ReleaseKind::Feature,
            envelope: SharedRaw::from_bytes(b"{\"x\": 1}\n").unwrap(),
            images: vec![],
        }
    }

    #[test]
    fn assemble_drops_yanked_and_sorts_newest_first() {
        let releases = vec![
            LoadedRelease {
                entry: entry("enc", "stable", "1.10.0", 1),
                yanked_at: None,
            },
            LoadedRelease {
                entry: entry("enc", "stable", "1.9.0", 2),
                yanked_at: None,
            },
            LoadedRelease {
                entry: entry("enc", "stable", "2.0.0", 3),
                yanked_at: Some(OffsetDateTime::UNIX_EPOCH),
            },
            LoadedRelease {
                entry: entry("enc", "beta", "3.0.0-rc.1", 4),
                yanked_at: None,
            },
        ];
        let c = Catalogue::assemble(3, vec![], vec![], vec![], releases);
        let stable: Vec<_> = c
            .releases("enc", "stable")
            .iter()
            .map(|r| r.version.to_string())
            .collect();
        assert_eq!(stable, ["1.10.0", "1.9.0"]);
        assert_eq!(c.releases("enc", "beta").len(), 1);
        assert!(c.releases("enc", "nightly").is_empty());
        assert!(c.releases("dec", "stable").is_empty());
        assert!(c.release_by_id(3).is_none(), "yanked release is not served");
        assert_eq!(c.envelopes().len(), 3);
    }

    #[test]
    fn image_names_are_known_only_when_releases_agree() {
        let image = |name: &str, seed: &[u8]| ImageEntry {
            name: name.into(),
            target: "rootfs".into(),
            length: 1,
            sha256: Sha256Digest::of(seed),
        };
        let with = |id: i64, channel: &str, images: Vec<ImageEntry>, yanked: bool| {
            let mut entry = entry("enc", channel, "1.0.0", id);
            entry.images = images;
            LoadedRelease {
                entry,
                yanked_at: yanked.then_some(OffsetDateTime::UNIX_EPOCH),
            }
        };
        let releases = vec![
            // Promoted: the same image under the same name on two channels.
            with(1, "beta", vec![image("fw.img", b"a")], false),
            with(2, "stable", vec![image("fw.img", b"a")], false),
            // Two names for one image.
            with(3, "beta", vec![image("one.img", b"b")], false),
            with(4, "stable", vec![image("two.img", b"b")], false),
            // Only in a yanked release: still named.
            with(5, "nightly", vec![image("old.img", b"c")], true),
        ];
        let c = Catalogue::assemble(1, vec![], vec![], vec![], releases);
        assert_eq!(c.image_name(&Sha256Digest::of(b"a")), Some(Some("fw.img")));
        assert_eq!(c.image_name(&Sha256Digest::of(b"b")), Some(None));
        assert_eq!(c.image_name(&Sha256Digest::of(b"c")), Some(Some("old.img")));
        assert_eq!(c.image_name(&Sha256Digest::of(b"d")), None);
    }

    #[test]
    fn raw_envelope_keeps_bytes_and_drops_trailing_newline() {
        let text = "{\n  \"b\": 1,\n  \"a\":   [1,2]\n}\n";
        let raw = SharedRaw::from_bytes(text.as_bytes()).unwrap();
        assert_eq!(raw.get(), text.trim_end());
        let wrapped = serde_json::to_string(&vec![raw]).unwrap();
        assert_eq!(wrapped, format!("[{}]", text.trim_end()));
        assert!(SharedRaw::from_bytes(b"not json").is_err());
        assert!(SharedRaw::from_bytes(&[0xff, 0xfe]).is_err());
    }
}
