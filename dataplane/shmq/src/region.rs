//! The shared-memory region: a header followed by one ring pair per core.
//!
//! Layout (offsets in bytes):
//!
//! | offset | what |
//! |---|---|
//! | 0 | [`RegionHeader`] (128 bytes, `#[repr(C)]`) |
//! | 128 + core × 2 × ring_bytes | core's commands ring (control → data) |
//! | 128 + (core × 2 + 1) × ring_bytes | core's events ring (data → control) |
//!
//! where `ring_bytes = 192 + capacity × 256`. The dataplane creates the region; it is the
//! owner. Creation never exposes a half-initialised region: the file is built under a
//! temporary name and then linked (strict create) or renamed (replace) to its final name.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use crate::ring::{ring_bytes, Consumer, Producer, RingCounters, RingRef, RECORD_SIZE};
use crate::sys::{self, Mapping};

/// "TRKLSHMQ" as a native-endian u64 (the region never leaves the machine).
pub const MAGIC: u64 = u64::from_ne_bytes(*b"TRKLSHMQ");
/// Layout and schema version; bump on any change to the header, ring or record layout.
pub const VERSION: u32 = 3;
/// Bytes of the region header.
pub const HEADER_SIZE: usize = 128;
/// Most cores a region may hold (bounded so a handoff fits one SCM_RIGHTS message).
pub const MAX_CORES: u16 = 64;
/// Smallest and largest ring capacity in records.
pub const MIN_RING_CAPACITY: u32 = 2;
/// Largest ring capacity in records (2^20 records = 256 MiB per ring).
pub const MAX_RING_CAPACITY: u32 = 1 << 20;
/// Directory of named regions.
pub const SHM_DIR: &str = "/dev/shm";

/// The region header as it lies at offset 0 of the region.
#[repr(C)]
pub(crate) struct RegionHeader {
    pub(crate) magic: u64,
    pub(crate) version: u32,
    pub(crate) cores: u32,
    pub(crate) ring_capacity: u32,
    pub(crate) record_size: u32,
    pub(crate) created_unix_ns: u64,
    pub(crate) dataplane_pid: u32,
    pub(crate) header_size: u32,
    pub(crate) region_size: u64,
    pub(crate) generation: u64,
    /// Set to 1 by the dataplane that replaced this region: a stale attacher sees it.
    pub(crate) superseded: AtomicU32,
    /// Pid of the control plane attached now (0: none).
    pub(crate) control_pid: AtomicU32,
    _reserved: [u8; 64],
}

const _: () = assert!(std::mem::size_of::<RegionHeader>() == HEADER_SIZE);
const _: () = assert!(std::mem::offset_of!(RegionHeader, magic) == 0);
const _: () = assert!(std::mem::offset_of!(RegionHeader, version) == 8);
const _: () = assert!(std::mem::offset_of!(RegionHeader, cores) == 12);
const _: () = assert!(std::mem::offset_of!(RegionHeader, ring_capacity) == 16);
const _: () = assert!(std::mem::offset_of!(RegionHeader, record_size) == 20);
const _: () = assert!(std::mem::offset_of!(RegionHeader, created_unix_ns) == 24);
const _: () = assert!(std::mem::offset_of!(RegionHeader, dataplane_pid) == 32);
const _: () = assert!(std::mem::offset_of!(RegionHeader, header_size) == 36);
const _: () = assert!(std::mem::offset_of!(RegionHeader, region_size) == 40);
const _: () = assert!(std::mem::offset_of!(RegionHeader, generation) == 48);
const _: () = assert!(std::mem::offset_of!(RegionHeader, superseded) == 56);
const _: () = assert!(std::mem::offset_of!(RegionHeader, control_pid) == 60);
const _: () = assert!(HEADER_SIZE % 64 == 0);

/// Geometry of a region, fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionConfig {
    /// Dataplane cores, each with one ring pair (1..=[`MAX_CORES`]).
    pub cores: u16,
    /// Records per ring, a power of two in [`MIN_RING_CAPACITY`]..=[`MAX_RING_CAPACITY`].
    pub ring_capacity: u32,
}

impl RegionConfig {
    /// Total bytes of a region with this geometry.
    pub fn region_size(&self) -> usize {
        HEADER_SIZE + usize::from(self.cores) * 2 * ring_bytes(self.ring_capacity)
    }

    fn check(&self) -> Result<(), RegionError> {
        if self.cores == 0 || self.cores > MAX_CORES {
            return Err(RegionError::BadConfig("cores must be 1..=MAX_CORES"));
        }
        if !self.ring_capacity.is_power_of_two()
            || !(MIN_RING_CAPACITY..=MAX_RING_CAPACITY).contains(&self.ring_capacity)
        {
            return Err(RegionError::BadConfig(
                "ring_capacity must be a power of two in range",
            ));
        }
        Ok(())
    }
}

/// What an attacher learns from a region's header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionInfo {
    /// Incremented each time a dataplane (re)creates the region under the same name.
    pub generation: u64,
    /// Geometry.
    pub config: RegionConfig,
    /// Creation time, nanoseconds since the Unix epoch.
    pub created_unix_ns: u64,
    /// Pid of the dataplane that created it.
    pub dataplane_pid: u32,
}

/// Ring direction within a core's pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Control plane → dataplane.
    Commands,
    /// Dataplane → control plane.
    Events,
}

/// Why a region could not be created or attached. Each variant names the mismatch.
#[derive(Debug)]
pub enum RegionError {
    /// A system call failed.
    Io { op: &'static str, source: io::Error },
    /// The name is not a plain file name.
    BadName,
    /// The requested geometry is out of range.
    BadConfig(&'static str),
    /// Strict create: a region of that name exists.
    AlreadyExists(PathBuf),
    /// Replace: the existing region's dataplane is still running.
    InUse { pid: u32 },
    /// The file is shorter than a header.
    TooSmall { len: u64 },
    /// Not a shmq region.
    BadMagic { found: u64 },
    /// Another layout version.
    VersionMismatch { found: u32, expected: u32 },
    /// Records of another size.
    RecordSizeMismatch { found: u32, expected: u32 },
    /// A header of another size.
    HeaderSizeMismatch { found: u32, expected: u32 },
    /// Core count or ring capacity out of range.
    BadGeometry { cores: u32, ring_capacity: u32 },
    /// The header's size disagrees with its geometry or with the file.
    SizeMismatch {
        header: u64,
        computed: u64,
        file: u64,
    },
    /// A ring's positions are impossible (tail behind head or more than a ring ahead).
    RingCorrupt {
        core: u16,
        direction: Direction,
        head: u64,
        tail: u64,
    },
    /// A newer dataplane replaced this region.
    Superseded { generation: u64 },
    /// Another live control plane is attached.
    ControlAttached { pid: u32 },
    /// The handoff message over the Unix socket was malformed.
    BadHandoff(&'static str),
    /// The handoff's generation is not the region's.
    GenerationMismatch { region: u64, handoff: u64 },
}

impl std::fmt::Display for RegionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegionError::Io { op, source } => write!(f, "{op}: {source}"),
            RegionError::BadName => write!(f, "region name must be a plain file name"),
            RegionError::BadConfig(why) => write!(f, "bad region config: {why}"),
            RegionError::AlreadyExists(p) => write!(f, "region {} already exists", p.display()),
            RegionError::InUse { pid } => write!(f, "region owned by live dataplane pid {pid}"),
            RegionError::TooSmall { len } => write!(f, "region file too small: {len} bytes"),
            RegionError::BadMagic { found } => write!(f, "bad magic {found:#018x}"),
            RegionError::VersionMismatch { found, expected } => {
                write!(f, "version mismatch: region {found}, expected {expected}")
            }
            RegionError::RecordSizeMismatch { found, expected } => {
                write!(
                    f,
                    "record size mismatch: region {found}, expected {expected}"
                )
            }
            RegionError::HeaderSizeMismatch { found, expected } => {
                write!(
                    f,
                    "header size mismatch: region {found}, expected {expected}"
                )
            }
            RegionError::BadGeometry {
                cores,
                ring_capacity,
            } => {
                write!(
                    f,
                    "bad geometry: {cores} cores, ring capacity {ring_capacity}"
                )
            }
            RegionError::SizeMismatch {
                header,
                computed,
                file,
            } => write!(
                f,
                "size mismatch: header says {header}, geometry gives {computed}, file is {file}"
            ),
            RegionError::RingCorrupt {
                core,
                direction,
                head,
                tail,
            } => {
                write!(
                    f,
                    "core {core} {direction:?} ring corrupt: head {head}, tail {tail}"
                )
            }
            RegionError::Superseded { generation } => {
                write!(
                    f,
                    "region generation {generation} was replaced by a newer dataplane"
                )
            }
            RegionError::ControlAttached { pid } => {
                write!(f, "control plane pid {pid} is already attached")
            }
            RegionError::BadHandoff(why) => write!(f, "bad handoff: {why}"),
            RegionError::GenerationMismatch { region, handoff } => {
                write!(
                    f,
                    "handoff generation {handoff} != region generation {region}"
                )
            }
        }
    }
}

impl std::error::Error for RegionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegionError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> RegionError {
    move |source| RegionError::Io { op, source }
}

/// Path of a named region: `/dev/shm/<name>`.
pub fn region_path(name: &str) -> Result<PathBuf, RegionError> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." || name.contains('\0') {
        return Err(RegionError::BadName);
    }
    Ok(Path::new(SHM_DIR).join(name))
}

/// A mapped region. Cheap to clone (the mapping is shared).
#[derive(Debug, Clone)]
pub struct Region {
    map: Arc<Mapping>,
    info: RegionInfo,
    /// Per ring: [producer taken, consumer taken], for this attachment (all its clones).
    claims: Arc<[[AtomicBool; 2]]>,
}

impl Region {
    /// Creates `/dev/shm/<name>` (mode 0660), failing with [`RegionError::AlreadyExists`] if
    /// it exists. Generation 1.
    pub fn create(name: &str, config: RegionConfig) -> Result<Region, RegionError> {
        let path = region_path(name)?;
        let (region, tmp) = Self::build_tmp(&path, config, 1)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => Ok(region),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(RegionError::AlreadyExists(path))
            }
            Err(e) => Err(RegionError::Io {
                op: "link region",
                source: e,
            }),
        }
    }

    /// Creates `/dev/shm/<name>`, replacing a region left by a dataplane that is gone: the
    /// new generation is the old one plus 1, and the old region is marked superseded so a
    /// control plane still mapping it notices. Refuses with [`RegionError::InUse`] if the
    /// old region's dataplane pid is alive (and is not us).
    pub fn create_or_replace(name: &str, config: RegionConfig) -> Result<Region, RegionError> {
        let path = region_path(name)?;
        let old = match Self::open_path(&path) {
            Ok(old) => Some(old),
            Err(RegionError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => None,
            // Garbage under our name: replace it, starting generations again.
            Err(_) => None,
        };
        let generation = match &old {
            Some(old) => {
                let pid = old.info.dataplane_pid;
                if pid != std::process::id() && sys::process_exists(pid) {
                    return Err(RegionError::InUse { pid });
                }
                old.info.generation + 1
            }
            None => 1,
        };
        let (region, tmp) = Self::build_tmp(&path, config, generation)?;
        if let Some(old) = &old {
            old.header().superseded.store(1, Ordering::Release);
        }
        std::fs::rename(&tmp, &path).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            RegionError::Io {
                op: "rename region",
                source: e,
            }
        })?;
        Ok(region)
    }

    /// Creates an anonymous region in a memfd, to hand over a Unix socket. Generation 1.
    pub fn create_memfd(config: RegionConfig) -> Result<Region, RegionError> {
        config.check()?;
        let size = config.region_size();
        let fd = sys::memfd_create("trunkline-shmq", size as u64).map_err(io_err("memfd"))?;
        let map = Mapping::map(fd, size).map_err(io_err("mmap"))?;
        Ok(Self::init(map, config, 1))
    }

    fn build_tmp(
        path: &Path,
        config: RegionConfig,
        generation: u64,
    ) -> Result<(Region, PathBuf), RegionError> {
        config.check()?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(format!(".tmp-{}", std::process::id()));
        let tmp = PathBuf::from(tmp);
        let _ = std::fs::remove_file(&tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o660)
            .open(&tmp)
            .map_err(io_err("create region"))?;
        let built = (|| {
            // The umask may have removed group bits: set them explicitly.
            file.set_permissions(std::fs::Permissions::from_mode(0o660))
                .map_err(io_err("chmod region"))?;
            let size = config.region_size();
            file.set_len(size as u64).map_err(io_err("size region"))?;
            let map = Mapping::map(OwnedFd::from(file), size).map_err(io_err("mmap"))?;
            Ok(Self::init(map, config, generation))
        })();
        match built {
            Ok(region) => Ok((region, tmp)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Writes the header of a fresh, zeroed mapping (rings start empty: all zero).
    fn init(map: Mapping, config: RegionConfig, generation: u64) -> Region {
        let size = config.region_size();
        assert!(map.len() >= size);
        let info = RegionInfo {
            generation,
            config,
            created_unix_ns: sys::unix_time_ns(),
            dataplane_pid: std::process::id(),
        };
        let header = RegionHeader {
            magic: MAGIC,
            version: VERSION,
            cores: u32::from(config.cores),
            ring_capacity: config.ring_capacity,
            record_size: RECORD_SIZE as u32,
            created_unix_ns: info.created_unix_ns,
            dataplane_pid: info.dataplane_pid,
            header_size: HEADER_SIZE as u32,
            region_size: size as u64,
            generation,
            superseded: AtomicU32::new(0),
            control_pid: AtomicU32::new(0),
            _reserved: [0; 64],
        };
        // SAFETY: the mapping is at least HEADER_SIZE bytes, page-aligned, fresh and not yet
        // visible to any other process (it is under a temporary name or anonymous).
        unsafe { std::ptr::write(map.base().cast::<RegionHeader>(), header) };
        Region {
            map: Arc::new(map),
            info,
            claims: new_claims(config.cores),
        }
    }

    /// Attaches to `/dev/shm/<name>`, validating the header and every ring.
    pub fn attach(name: &str) -> Result<Region, RegionError> {
        let path = region_path(name)?;
        let region = Self::open_path(&path)?;
        if region.is_superseded() {
            return Err(RegionError::Superseded {
                generation: region.info.generation,
            });
        }
        Ok(region)
    }

    /// Attaches to a region passed as a descriptor (memfd or an opened file).
    pub fn attach_fd(fd: OwnedFd) -> Result<Region, RegionError> {
        let file = File::from(fd);
        let len = file.metadata().map_err(io_err("stat region"))?.len();
        Self::validate_and_map(file, len)
    }

    fn open_path(path: &Path) -> Result<Region, RegionError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err("open region"))?;
        let len = file.metadata().map_err(io_err("stat region"))?.len();
        Self::validate_and_map(file, len)
    }

    fn validate_and_map(file: File, len: u64) -> Result<Region, RegionError> {
        if len < HEADER_SIZE as u64 {
            return Err(RegionError::TooSmall { len });
        }
        // Map the header alone first: the sizes in it are untrusted until checked.
        let head_map = Mapping::map(
            OwnedFd::from(file.try_clone().map_err(io_err("dup region"))?),
            HEADER_SIZE,
        )
        .map_err(io_err("mmap header"))?;
        let mut raw = [0u8; HEADER_SIZE];
        // SAFETY: the header mapping has HEADER_SIZE readable bytes; we copy them out as
        // plain bytes (any value is fine) and decode the copy.
        unsafe { std::ptr::copy_nonoverlapping(head_map.base(), raw.as_mut_ptr(), HEADER_SIZE) };
        drop(head_map);
        let rd32 = |o: usize| u32::from_ne_bytes([raw[o], raw[o + 1], raw[o + 2], raw[o + 3]]);
        let rd64 = |o: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&raw[o..o + 8]);
            u64::from_ne_bytes(b)
        };
        let magic = rd64(0);
        if magic != MAGIC {
            return Err(RegionError::BadMagic { found: magic });
        }
        let version = rd32(8);
        if version != VERSION {
            return Err(RegionError::VersionMismatch {
                found: version,
                expected: VERSION,
            });
        }
        let record_size = rd32(20);
        if record_size != RECORD_SIZE as u32 {
            return Err(RegionError::RecordSizeMismatch {
                found: record_size,
                expected: RECORD_SIZE as u32,
            });
        }
        let header_size = rd32(36);
        if header_size != HEADER_SIZE as u32 {
            return Err(RegionError::HeaderSizeMismatch {
                found: header_size,
                expected: HEADER_SIZE as u32,
            });
        }
        let (cores, ring_capacity) = (rd32(12), rd32(16));
        let config = RegionConfig {
            cores: cores.min(u32::from(u16::MAX)) as u16,
            ring_capacity,
        };
        if cores > u32::from(MAX_CORES) || config.check().is_err() {
            return Err(RegionError::BadGeometry {
                cores,
                ring_capacity,
            });
        }
        let header_len = rd64(40);
        let computed = config.region_size() as u64;
        if header_len != computed || len < computed {
            return Err(RegionError::SizeMismatch {
                header: header_len,
                computed,
                file: len,
            });
        }
        let info = RegionInfo {
            generation: rd64(48),
            config,
            created_unix_ns: rd64(24),
            dataplane_pid: rd32(32),
        };
        let map = Mapping::map(OwnedFd::from(file), computed as usize).map_err(io_err("mmap"))?;
        let region = Region {
            map: Arc::new(map),
            info,
            claims: new_claims(config.cores),
        };
        for core in 0..config.cores {
            for direction in [Direction::Commands, Direction::Events] {
                let c = region.ring(core, direction).counters();
                if c.pushed < c.popped || c.pushed - c.popped > u64::from(ring_capacity) {
                    return Err(RegionError::RingCorrupt {
                        core,
                        direction,
                        head: c.popped,
                        tail: c.pushed,
                    });
                }
            }
        }
        Ok(region)
    }

    pub(crate) fn header(&self) -> &RegionHeader {
        // SAFETY: the mapping holds a validated header at offset 0 (page-aligned) and lives
        // as long as self.map; fields other than the atomics are never written after the
        // region is published, so shared references to them are sound.
        unsafe { &*(self.map.base() as *const RegionHeader) }
    }

    pub(crate) fn ring(&self, core: u16, direction: Direction) -> RingRef {
        assert!(core < self.info.config.cores, "core {core} out of range");
        let idx = usize::from(core) * 2 + usize::from(direction == Direction::Events);
        let offset = HEADER_SIZE + idx * ring_bytes(self.info.config.ring_capacity);
        RingRef::new(self.map.clone(), offset, self.info.config.ring_capacity)
    }

    fn ring_index(&self, core: u16, direction: Direction) -> Option<usize> {
        (core < self.info.config.cores)
            .then(|| usize::from(core) * 2 + usize::from(direction == Direction::Events))
    }

    /// Takes the producing side of a ring; `None` if the core is out of range or this
    /// attachment already handed it out (released when the `Producer` drops). Across
    /// processes SPSC is kept by role: the dataplane produces events, the one control plane
    /// holding the seat produces commands.
    pub fn producer(&self, core: u16, direction: Direction) -> Option<Producer> {
        let idx = self.ring_index(core, direction)?;
        let claim = ClaimGuard::take(self.claims.clone(), idx, 0)?;
        Some(Producer::new(self.ring(core, direction), claim))
    }

    /// Takes the consuming side of a ring; see [`Region::producer`].
    pub fn consumer(&self, core: u16, direction: Direction) -> Option<Consumer> {
        let idx = self.ring_index(core, direction)?;
        let claim = ClaimGuard::take(self.claims.clone(), idx, 1)?;
        Some(Consumer::new(self.ring(core, direction), claim))
    }

    /// Counters of one ring.
    pub fn counters(&self, core: u16, direction: Direction) -> Option<RingCounters> {
        self.ring_index(core, direction)?;
        Some(self.ring(core, direction).counters())
    }

    /// What the header says.
    pub fn info(&self) -> RegionInfo {
        self.info
    }

    /// Whether a newer dataplane has replaced this region.
    pub fn is_superseded(&self) -> bool {
        self.header().superseded.load(Ordering::Acquire) != 0
    }

    /// Checks that this region is still the current one under `name`: not superseded, and
    /// the file under that name has our generation. A control plane calls this when the
    /// dataplane goes quiet.
    pub fn check_current(&self, name: &str) -> Result<(), RegionError> {
        let generation = self.info.generation;
        if self.is_superseded() {
            return Err(RegionError::Superseded { generation });
        }
        let now = Self::open_path(&region_path(name)?)?;
        if now.info.generation != generation {
            return Err(RegionError::Superseded { generation });
        }
        Ok(())
    }

    /// Whether the dataplane that created the region still runs.
    pub fn dataplane_alive(&self) -> bool {
        sys::process_exists(self.info.dataplane_pid)
    }

    /// Claims the control-plane seat: fails if another live process holds it.
    pub(crate) fn claim_control(&self) -> Result<(), RegionError> {
        let me = std::process::id();
        let seat = &self.header().control_pid;
        loop {
            let current = seat.load(Ordering::Acquire);
            if current != 0 && current != me && sys::process_exists(current) {
                return Err(RegionError::ControlAttached { pid: current });
            }
            if seat
                .compare_exchange(current, me, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                return Ok(());
            }
        }
    }

    /// Releases the control-plane seat if we hold it.
    pub(crate) fn release_control(&self) {
        let me = std::process::id();
        let _ =
            self.header()
                .control_pid
                .compare_exchange(me, 0, Ordering::AcqRel, Ordering::Relaxed);
    }

    /// The descriptor backing the region (to hand over a Unix socket).
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.map.fd()
    }
}

fn new_claims(cores: u16) -> Arc<[[AtomicBool; 2]]> {
    (0..usize::from(cores) * 2)
        .map(|_| [AtomicBool::new(false), AtomicBool::new(false)])
        .collect()
}

/// Holds one side of one ring for this attachment; releases it on drop.
pub(crate) struct ClaimGuard {
    claims: Arc<[[AtomicBool; 2]]>,
    ring: usize,
    side: usize,
}

impl ClaimGuard {
    fn take(claims: Arc<[[AtomicBool; 2]]>, ring: usize, side: usize) -> Option<ClaimGuard> {
        claims[ring][side]
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .ok()?;
        Some(ClaimGuard { claims, ring, side })
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.claims[self.ring][self.side].store(false, Ordering::Release);
    }
}

impl std::fmt::Debug for ClaimGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ClaimGuard(ring {}, side {})", self.ring, self.side)
    }
}

/// Removes `/dev/shm/<name>`; a missing file is not an error.
pub fn unlink(name: &str) -> Result<(), RegionError> {
    match std::fs::remove_file(region_path(name)?) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(RegionError::Io {
            op: "unlink region",
            source: e,
        }),
    }
}

/// Removes the named region when dropped (tests, and a dataplane's orderly shutdown).
#[derive(Debug)]
pub struct UnlinkGuard {
    name: String,
}

impl UnlinkGuard {
    /// Guards `/dev/shm/<name>`.
    pub fn new(name: impl Into<String>) -> UnlinkGuard {
        UnlinkGuard { name: name.into() }
    }

    /// The guarded name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for UnlinkGuard {
    fn drop(&mut self) {
        let _ = unlink(&self.name);
    }
}
