//! The `bpf(2)` and `perf_event_open(2)` calls skbtrace makes itself, for
//! what aya 0.14 cannot do: load a program whose instructions we changed,
//! with the attach type we choose, and link it (kprobe-multi, tp_btf, raw_tp,
//! perf-event kprobes); set up global data maps; and find a program's id.
//! Everything else goes through aya.

use std::{
    ffi::CString,
    io,
    os::fd::{FromRawFd as _, OwnedFd, RawFd},
};

pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_PROG_LOAD: libc::c_long = 5;
pub const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
pub const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
pub const BPF_MAP_FREEZE: libc::c_long = 22;
pub const BPF_LINK_CREATE: libc::c_long = 28;

pub const BPF_PROG_TYPE_KPROBE: u32 = 2;
pub const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
pub const BPF_PROG_TYPE_TRACING: u32 = 26;

pub const BPF_TRACE_RAW_TP: u32 = 23;
pub const BPF_TRACE_KPROBE_MULTI: u32 = 42;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to the fields we use;
/// the kernel treats the missing tail as zeros.
#[repr(C)]
#[derive(Default)]
pub(crate) struct ProgLoadAttr {
    pub prog_type: u32,
    pub insn_cnt: u32,
    pub insns: u64,
    pub license: u64,
    pub log_level: u32,
    pub log_size: u32,
    pub log_buf: u64,
    pub kern_version: u32,
    pub prog_flags: u32,
    pub prog_name: [u8; 16],
    pub prog_ifindex: u32,
    pub expected_attach_type: u32,
    pub prog_btf_fd: u32,
    pub func_info_rec_size: u32,
    pub func_info: u64,
    pub func_info_cnt: u32,
    pub line_info_rec_size: u32,
    pub line_info: u64,
    pub line_info_cnt: u32,
    pub attach_btf_id: u32,
    pub attach_btf_obj_fd: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Default)]
struct KprobeMultiLinkAttr {
    prog_fd: u32,
    target_fd: u32,
    attach_type: u32,
    flags: u32,
    kprobe_multi_flags: u32,
    cnt: u32,
    syms: u64,
    addrs: u64,
    cookies: u64,
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// Sets one element; `key` and `value` must have the map's sizes.
pub fn map_update_elem(map: RawFd, key: &[u8], value: &[u8]) -> io::Result<()> {
    let mut attr = MapElemAttr {
        map_fd: map as u32,
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    bpf_call(BPF_MAP_UPDATE_ELEM, &mut attr).map(drop)
}

/// Makes a map read-only for user space, so the verifier may treat its
/// contents as constants.
pub fn map_freeze(map: RawFd) -> io::Result<()> {
    let mut attr = MapElemAttr { map_fd: map as u32, ..Default::default() };
    bpf_call(BPF_MAP_FREEZE, &mut attr).map(drop)
}

#[repr(C)]
#[derive(Default)]
struct InfoByFdAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// A loaded program's id (the start of `struct bpf_prog_info`: type, id).
pub fn prog_id(prog: RawFd) -> io::Result<u32> {
    let mut info = [0u32; 2];
    let mut attr =
        InfoByFdAttr { bpf_fd: prog as u32, info_len: size_of_val(&info) as u32, info: info.as_mut_ptr() as u64 };
    bpf_call(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok(info[1])
}

#[repr(C)]
#[derive(Default)]
struct RawTracepointOpenAttr {
    name: u64,
    prog_fd: u32,
    _pad: u32,
}

/// `bpf(cmd, attr)`: the kernel's return value, or the error.
pub(crate) fn bpf_call<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<i64> {
    // SAFETY: attr is a properly laid out bpf_attr prefix of the given size.
    let ret = unsafe { libc::syscall(libc::SYS_bpf, cmd, (attr as *mut T).cast::<libc::c_void>(), size_of::<T>()) };
    if ret < 0 { Err(io::Error::last_os_error()) } else { Ok(ret) }
}

/// A `bpf` command that returns a new file descriptor.
pub(crate) fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> io::Result<OwnedFd> {
    let fd = bpf_call(cmd, attr)?;
    // SAFETY: these commands return a new file descriptor on success.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// What to load.
pub struct ProgLoad<'a> {
    pub prog_type: u32,
    pub expected_attach_type: u32,
    pub attach_btf_id: u32,
    pub name: &'a str,
    /// Instructions in the kernel's 8-byte encoding.
    pub insns: &'a [u64],
}

/// A failed load, with the verifier's log when it gave one.
#[derive(Debug)]
pub struct LoadError {
    pub error: io::Error,
    pub log: String,
}

pub fn prog_load(prog: &ProgLoad<'_>) -> Result<OwnedFd, LoadError> {
    let license = c"GPL";
    let mut name = [0u8; 16];
    for (dst, src) in name.iter_mut().zip(prog.name.bytes().take(15)) {
        *dst = src;
    }
    let attempt = |log: Option<&mut Vec<u8>>| {
        let mut attr = ProgLoadAttr {
            prog_type: prog.prog_type,
            insn_cnt: prog.insns.len() as u32,
            insns: prog.insns.as_ptr() as u64,
            license: license.as_ptr() as u64,
            prog_name: name,
            expected_attach_type: prog.expected_attach_type,
            attach_btf_id: prog.attach_btf_id,
            ..Default::default()
        };
        if let Some(log) = log {
            attr.log_level = 1;
            attr.log_size = log.len() as u32;
            attr.log_buf = log.as_mut_ptr() as u64;
        }
        bpf(BPF_PROG_LOAD, &mut attr)
    };
    // Load without a log first: it is faster, and most loads succeed.
    match attempt(None) {
        Ok(fd) => Ok(fd),
        Err(error) if error.raw_os_error() == Some(libc::EACCES) || error.raw_os_error() == Some(libc::EINVAL) => {
            let mut log = vec![0u8; 16 << 20];
            match attempt(Some(&mut log)) {
                Ok(fd) => Ok(fd),
                Err(error) => {
                    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                    Err(LoadError { error, log: String::from_utf8_lossy(&log[..end]).into_owned() })
                }
            }
        }
        Err(error) => Err(LoadError { error, log: String::new() }),
    }
}

/// Attaches a program loaded as `BPF_TRACE_KPROBE_MULTI` to every symbol in
/// `syms`, each with its cookie (same order).
pub fn link_kprobe_multi(prog: RawFd, syms: &[&CString], cookies: &[u64]) -> io::Result<OwnedFd> {
    assert_eq!(syms.len(), cookies.len(), "one cookie per symbol");
    let ptrs: Vec<*const libc::c_char> = syms.iter().map(|s| s.as_ptr()).collect();
    let mut attr = KprobeMultiLinkAttr {
        prog_fd: prog as u32,
        attach_type: BPF_TRACE_KPROBE_MULTI,
        cnt: ptrs.len() as u32,
        syms: ptrs.as_ptr() as u64,
        cookies: cookies.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_LINK_CREATE, &mut attr)
}

/// Attaches a raw tracepoint program by tracepoint name, or a `tp_btf`
/// program (whose target was fixed at load) when `name` is `None`.
pub fn raw_tracepoint_open(prog: RawFd, name: Option<&CString>) -> io::Result<OwnedFd> {
    let mut attr = RawTracepointOpenAttr { name: name.map_or(0, |n| n.as_ptr() as u64), prog_fd: prog as u32, _pad: 0 };
    bpf(BPF_RAW_TRACEPOINT_OPEN, &mut attr)
}

/// `struct perf_event_attr` up to `config2` (PERF_ATTR_SIZE_VER1 = 72).
#[repr(C)]
#[derive(Default)]
struct PerfEventAttr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
}

const PERF_EVENT_IOC_ENABLE: libc::c_ulong = 0x2400;
const PERF_EVENT_IOC_SET_BPF: libc::c_ulong = 0x4004_2408;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// Creates a kprobe on `func` through the kprobe PMU (`pmu_type` from
/// /sys/bus/event_source/devices/kprobe/type) and runs `prog` on it. Closing
/// the returned descriptor removes the kprobe.
pub fn attach_kprobe(pmu_type: u32, func: &CString, prog: RawFd) -> io::Result<OwnedFd> {
    attach_kprobe_config(pmu_type, 0, func, prog)
}

/// A kretprobe: the kprobe PMU with its `retprobe` config bit set.
pub fn attach_kretprobe(pmu_type: u32, retprobe_bit: u32, func: &CString, prog: RawFd) -> io::Result<OwnedFd> {
    attach_kprobe_config(pmu_type, 1 << retprobe_bit, func, prog)
}

fn attach_kprobe_config(pmu_type: u32, config: u64, func: &CString, prog: RawFd) -> io::Result<OwnedFd> {
    let mut attr = PerfEventAttr {
        type_: pmu_type,
        config,
        size: size_of::<PerfEventAttr>() as u32,
        config1: func.as_ptr() as u64,
        sample_period: 1,
        wakeup_events: 1,
        ..Default::default()
    };
    // SAFETY: attr is a valid perf_event_attr prefix; pid -1 / cpu 0 is how
    // kprobe PMU events are opened system-wide.
    let fd = unsafe { libc::syscall(libc::SYS_perf_event_open, &raw mut attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: perf_event_open returned a new descriptor.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
    use std::os::fd::AsRawFd as _;
    // SAFETY: plain ioctls on the descriptor we own.
    unsafe {
        if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_SET_BPF, prog) < 0 {
            return Err(io::Error::last_os_error());
        }
        if libc::ioctl(fd.as_raw_fd(), PERF_EVENT_IOC_ENABLE, 0) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(fd)
}
