//! Master keys: parsing the key list, loading it from the environment or a file.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use mandate_types::Secret;
use ring::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
use ring::rand::{SecureRandom as _, SystemRandom};

/// The environment variable holding the key list inline.
pub const MASTER_KEY_VAR: &str = "MANDATE_MASTER_KEY";
/// The environment variable naming a file that holds the key list.
pub const MASTER_KEY_FILE_VAR: &str = "MANDATE_MASTER_KEY_FILE";

/// Bytes in an AES-256 key.
pub const KEY_LEN: usize = 32;

/// Longest key id accepted.
const MAX_KEY_ID_LEN: usize = 32;

/// Why a master key list was refused. No variant carries key material: an entry is
/// named by its position (and its id once the id is known to be well formed).
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("both {MASTER_KEY_VAR} and {MASTER_KEY_FILE_VAR} are set; set only one")]
    BothSet,
    #[error("`{var}` is not valid UTF-8")]
    NotUnicode { var: &'static str },
    #[error("{source_name} holds no master key")]
    Empty { source_name: String },
    #[error(
        "{source_name}, entry {entry}: the key id is malformed (1 to {MAX_KEY_ID_LEN} characters of A-Z a-z 0-9 _ -)"
    )]
    BadKeyId { source_name: String, entry: usize },
    #[error("{source_name}, entry {entry}: the key is not base64 (standard or URL-safe alphabet)")]
    BadBase64 { source_name: String, entry: usize },
    #[error(
        "{source_name}, entry {entry}: the key is {len} bytes; AES-256 needs exactly {KEY_LEN}"
    )]
    BadLength {
        source_name: String,
        entry: usize,
        len: usize,
    },
    #[error("{source_name}: key id `{key_id}` is listed twice")]
    DuplicateId { source_name: String, key_id: String },
    #[error("cannot read the master key file `{path}`: {source}")]
    ReadFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "the master key file `{path}` is accessible by group or others (mode {mode:04o}); make it 0600 or 0400"
    )]
    OpenPermissions { path: String, mode: u32 },
    #[error("the system random number generator failed")]
    Random,
    #[error("the AES-256-GCM implementation refused a key")]
    Unusable,
}

/// A key's name, carried in every sealed value so the right key opens it:
/// 1 to 32 characters of `A-Z a-z 0-9 _ -`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(String);

impl KeyId {
    /// Parses a key id; `None` if it is empty, too long or has another character.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = !s.is_empty()
            && s.len() <= MAX_KEY_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id given to a key listed without one: `k` and the first 12 hex digits of the
    /// SHA-256 of the key (a digest of a random 256-bit key reveals nothing of it).
    fn derived(key: &[u8; KEY_LEN]) -> Self {
        let digest = ring::digest::digest(&ring::digest::SHA256, key);
        let hex: String = digest
            .as_ref()
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        Self(format!("k{hex}"))
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One 256-bit master key and its id.
pub struct MasterKey {
    id: KeyId,
    bytes: Secret<[u8; KEY_LEN]>,
    aead: LessSafeKey,
}

impl MasterKey {
    /// A key from its bytes.
    pub fn new(id: KeyId, bytes: [u8; KEY_LEN]) -> Result<Self, KeyError> {
        // AES-256-GCM accepts every 32-byte key; ring only refuses a wrong length.
        let aead = UnboundKey::new(&AES_256_GCM, &bytes).map_err(|_| KeyError::Unusable)?;
        Ok(Self {
            id,
            bytes: Secret::new(bytes),
            aead: LessSafeKey::new(aead),
        })
    }

    /// A fresh random key with the given id.
    pub fn generate(id: KeyId) -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Self::new(id, bytes)
    }

    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The key as one entry of the key list format (`id:BASE64URL`), to hand to an
    /// operator once (e.g. by a key-generating command). Handle as the secret it is.
    pub fn to_entry(&self) -> Secret<String> {
        Secret::new(format!(
            "{}:{}",
            self.id,
            URL_SAFE_NO_PAD.encode(self.bytes.expose())
        ))
    }

    pub(crate) fn aead(&self) -> &LessSafeKey {
        &self.aead
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("id", &self.id)
            .field("bytes", &self.bytes)
            .finish()
    }
}

/// The master keys, newest first: the first seals, every one opens.
///
/// INVARIANT: no two keys share an id.
pub struct MasterKeys {
    newest: MasterKey,
    older: Vec<MasterKey>,
}

impl MasterKeys {
    /// A key list from keys, newest first.
    pub fn new(keys: Vec<MasterKey>) -> Result<Self, KeyError> {
        let source_name = "the master key list".to_owned();
        for (i, key) in keys.iter().enumerate() {
            if keys.iter().skip(i + 1).any(|other| other.id == key.id) {
                return Err(KeyError::DuplicateId {
                    source_name,
                    key_id: key.id.to_string(),
                });
            }
        }
        let mut keys = keys.into_iter();
        let newest = keys.next().ok_or(KeyError::Empty { source_name })?;
        Ok(Self {
            newest,
            older: keys.collect(),
        })
    }

    /// One fresh random key (id `k` + 12 hex digits), for tests and demos.
    pub fn generate() -> Result<Self, KeyError> {
        let mut bytes = [0u8; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| KeyError::Random)?;
        Self::new(vec![MasterKey::new(KeyId::derived(&bytes), bytes)?])
    }

    /// Loads the keys from `MANDATE_MASTER_KEY` or `MANDATE_MASTER_KEY_FILE`;
    /// `Ok(None)` when neither is set (the caller decides whether that is fatal).
    pub fn from_env() -> Result<Option<Self>, KeyError> {
        Self::from_lookup(|name| std::env::var_os(name))
    }

    /// [`MasterKeys::from_env`] over any variable lookup (tests pass a map).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<std::ffi::OsString>,
    ) -> Result<Option<Self>, KeyError> {
        let inline = lookup(MASTER_KEY_VAR);
        let file = lookup(MASTER_KEY_FILE_VAR);
        match (inline, file) {
            (Some(_), Some(_)) => Err(KeyError::BothSet),
            (None, None) => Ok(None),
            (Some(value), None) => {
                let value = value.into_string().map_err(|_| KeyError::NotUnicode {
                    var: MASTER_KEY_VAR,
                })?;
                let value = Secret::new(value);
                Self::parse_list(value.expose(), MASTER_KEY_VAR).map(Some)
            }
            (None, Some(path)) => Self::from_file(&PathBuf::from(path)).map(Some),
        }
    }

    /// Reads a key file: one `id:BASE64` (or bare `BASE64`) per line, newest first;
    /// blank lines and lines starting with `#` are ignored. On unix the file must not
    /// be accessible by group or others.
    pub fn from_file(path: &Path) -> Result<Self, KeyError> {
        let shown = path.display().to_string();
        let read_error = |source| KeyError::ReadFile {
            path: shown.clone(),
            source,
        };
        // Checked on the opened file, so the file read is the file checked.
        let mut file = std::fs::File::open(path).map_err(read_error)?;
        let metadata = file.metadata().map_err(read_error)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = metadata.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(KeyError::OpenPermissions { path: shown, mode });
            }
        }
        #[cfg(not(unix))]
        let _ = metadata;
        let mut text = String::new();
        std::io::Read::read_to_string(&mut file, &mut text).map_err(read_error)?;
        let text = Secret::new(text);
        let entries = text
            .expose()
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty() && !line.starts_with('#'));
        Self::parse_entries(entries, &format!("`{shown}`"))
    }

    /// Parses the inline format: entries separated by commas (or newlines), newest
    /// first. `source_name` names where the text came from in errors.
    pub fn parse_list(value: &str, source_name: &str) -> Result<Self, KeyError> {
        let entries = value
            .split([',', '\n'])
            .map(str::trim)
            .filter(|e| !e.is_empty());
        Self::parse_entries(entries, source_name)
    }

    fn parse_entries<'a>(
        entries: impl Iterator<Item = &'a str>,
        source_name: &str,
    ) -> Result<Self, KeyError> {
        let mut keys = Vec::new();
        for (n, entry) in entries.enumerate() {
            keys.push(parse_entry(entry, n + 1, source_name)?);
        }
        if keys.is_empty() {
            return Err(KeyError::Empty {
                source_name: source_name.to_owned(),
            });
        }
        Self::new(keys).map_err(|e| match e {
            KeyError::DuplicateId { key_id, .. } => KeyError::DuplicateId {
                source_name: source_name.to_owned(),
                key_id,
            },
            other => other,
        })
    }

    /// The key that seals: the newest.
    pub fn newest(&self) -> &MasterKey {
        &self.newest
    }

    /// The key with this id, if it is still listed.
    pub fn key(&self, id: &str) -> Option<&MasterKey> {
        self.all().find(|k| k.id.as_str() == id)
    }

    /// The ids, newest first.
    pub fn ids(&self) -> impl Iterator<Item = &KeyId> {
        self.all().map(|k| &k.id)
    }

    fn all(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.newest).chain(&self.older)
    }

    fn into_vec(self) -> Vec<MasterKey> {
        let mut keys = vec![self.newest];
        keys.extend(self.older);
        keys
    }

    /// This list with `key` added as the newest (a rotation's first step).
    pub fn with_newest(self, key: MasterKey) -> Result<Self, KeyError> {
        let mut keys = vec![key];
        keys.extend(self.into_vec());
        Self::new(keys)
    }

    /// This list without the key `id` (a rotation's last step, once nothing is sealed
    /// under it). Refused if it is the only key.
    pub fn without(self, id: &str) -> Result<Self, KeyError> {
        let mut keys = self.into_vec();
        keys.retain(|k| k.id.as_str() != id);
        Self::new(keys)
    }
}

impl fmt::Debug for MasterKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKeys")
            .field("ids", &self.ids().collect::<Vec<_>>())
            .finish()
    }
}

/// Standard or URL-safe base64, padded or not: operators paste what their tool printed
/// (`openssl rand -base64 32` prints the padded standard alphabet).
fn decode_key(text: &str) -> Option<Secret<Vec<u8>>> {
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let engine = if text.contains(['+', '/']) {
        GeneralPurpose::new(&alphabet::STANDARD, config)
    } else {
        GeneralPurpose::new(&alphabet::URL_SAFE, config)
    };
    engine.decode(text).ok().map(Secret::new)
}

fn parse_entry(entry: &str, n: usize, source_name: &str) -> Result<MasterKey, KeyError> {
    // Base64 has no `:`, so a `:` can only separate an id from its key.
    let (id, encoded) = match entry.split_once(':') {
        Some((id, key)) => {
            let id = KeyId::parse(id.trim()).ok_or_else(|| KeyError::BadKeyId {
                source_name: source_name.to_owned(),
                entry: n,
            })?;
            (Some(id), key.trim())
        }
        None => (None, entry),
    };
    let decoded = decode_key(encoded).ok_or_else(|| KeyError::BadBase64 {
        source_name: source_name.to_owned(),
        entry: n,
    })?;
    let bytes: [u8; KEY_LEN] =
        decoded
            .expose()
            .as_slice()
            .try_into()
            .map_err(|_| KeyError::BadLength {
                source_name: source_name.to_owned(),
                entry: n,
                len: decoded.expose().len(),
            })?;
    let id = id.unwrap_or_else(|| KeyId::derived(&bytes));
    MasterKey::new(id, bytes)
}
