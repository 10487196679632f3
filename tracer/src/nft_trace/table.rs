//! The trace table: `table inet skbtrace_nft_trace_PID { flags owner;
//! chain trace { meta nftrace set 1 } }` in skbtrace's own netns. Its chain
//! has no hook, so no packet ever runs it; its rule exists only to turn on
//! nf_tables's `nft_trace_enabled` static key (`nft_meta_set_init`), which
//! counts such rules: several skbtraces can trace at once, each with its
//! own table.
//!
//! Contract:
//! - Built and sent over netlink with `netlink-packet-netfilter` (already
//!   skbtrace's ctnetlink crate, MIT like us, and it types nf_tables's
//!   messages), not the `nft` program: installing needs no program on the
//!   host, errors come back as errno values we can explain, and the
//!   `owner` flag needs a socket that lives as long as skbtrace. (rustables,
//!   the other nf_tables crate, is GPL-3.0; nftnl needs libnftnl.)
//! - [`TraceTable::install`] first lists the inet tables and deletes those
//!   a killed run left: named `skbtrace_nft_trace_PID`, without an owner,
//!   and PID is gone (only a kernel without owner tables leaves them). Then
//!   one batch creates its table (with `NFT_TABLE_F_OWNER`, or without it
//!   on a kernel that refuses the flag), the chain and the rule.
//! - The first message loads nf_tables if it is a module not loaded yet
//!   (the kernel asks modprobe for `nfnetlink-subsys-10` and answers
//!   EAGAIN: asked again); a kernel that cannot load it answers EOPNOTSUPP:
//!   [`NoNfTables`].
//! - Dropping it deletes the table (and closes the socket, which deletes an
//!   owner table anyway).
//! - Every message is acknowledged; a reply that does not come within 5 s
//!   is an error rather than a hang.

use std::{os::fd::AsRawFd as _, time::Duration};

use anyhow::{Context as _, anyhow};
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_DUMP, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
    nftables::{
        ChainAttribute, ChainMessage, DataAttribute, Expressions, Immediate, Meta, MetaKey, NfTablesMessage, Register,
        RuleAttribute, RuleMessage, TableAttribute, TableFlags, TableMessage,
    },
    none::ControlMessage,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// The table's name is this, `_`, and skbtrace's pid.
pub const TABLE_PREFIX: &str = "skbtrace_nft_trace";
pub const CHAIN: &str = "trace";

/// `NFNL_SUBSYS_NFTABLES`: the batch's `res_id`.
const NFNL_SUBSYS_NFTABLES: u16 = 10;
/// How long a reply may take.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);

/// The kernel has no nf_tables (not built, or its module cannot be loaded).
#[derive(Debug)]
pub struct NoNfTables(pub String);

impl std::fmt::Display for NoNfTables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "--nft-trace needs nf_tables, and this kernel has none: {}", self.0)
    }
}

impl std::error::Error for NoNfTables {}

/// The installed table; dropping it removes it.
pub struct TraceTable {
    socket: Socket,
    seq: u32,
    /// `skbtrace_nft_trace_PID`.
    pub name: String,
    /// Whether the kernel took the owner flag.
    pub owned: bool,
    /// Whether the table was created (and so is removed on drop).
    installed: bool,
}

impl TraceTable {
    pub fn install() -> anyhow::Result<Self> {
        Self::install_as(format!("{TABLE_PREFIX}_{}", std::process::id()))
    }

    fn install_as(name: String) -> anyhow::Result<Self> {
        let socket = Socket::new(NETLINK_NETFILTER).map_err(|e| match e.raw_os_error() {
            Some(libc::EPROTONOSUPPORT) => anyhow::Error::from(NoNfTables(
                "no netfilter netlink (nfnetlink is not built or cannot be loaded)".into(),
            )),
            _ => anyhow::Error::from(e).context("opening a netfilter netlink socket"),
        })?;
        let mut table = Self { socket, seq: 0, name, owned: false, installed: false };
        table.socket.bind_auto().context("binding the netfilter netlink socket")?;
        table.socket.connect(&SocketAddr::new(0, 0)).context("connecting the netfilter netlink socket")?;
        set_reply_timeout(&table.socket)?;

        for stale in table.tables()?.into_iter().filter(|t| t.is_stale()) {
            match table.batch(vec![delete_table(&stale.name)]) {
                Ok(()) => note!("--nft-trace: removed table inet {}, left by a run that was killed", stale.name),
                Err(e) => note!("--nft-trace: could not remove table inet {}, left by a killed run: {e}", stale.name),
            }
        }
        // Owner tables are Linux ≥ 5.12; older kernels refuse the flag.
        let what = format!("--nft-trace: creating table inet {}", table.name);
        let name = table.name.clone();
        match table.batch(create(&name, true)) {
            Ok(()) => table.owned = true,
            Err(BatchError::Refused(libc::EOPNOTSUPP)) => {
                table.batch(create(&name, false)).map_err(|e| anyhow!("{what}: {e}"))?
            }
            Err(e) => return Err(anyhow!("{what}: {e}")),
        }
        table.installed = true;
        Ok(table)
    }

    /// The inet tables of skbtrace's netns.
    fn tables(&mut self) -> anyhow::Result<Vec<Table>> {
        // Asked twice: the first request may load nf_tables and get EAGAIN.
        for _ in 0..2 {
            match self.dump_tables() {
                Err(BatchError::Refused(libc::EAGAIN)) => continue,
                Err(BatchError::Refused(libc::EOPNOTSUPP)) => {
                    return Err(NoNfTables(
                        "the kernel refused nf_tables's messages (module nf_tables missing or not loadable: try \
                         modprobe nf_tables)"
                            .into(),
                    )
                    .into());
                }
                other => return other.map_err(|e| anyhow!("--nft-trace: listing nf_tables tables: {e}")),
            }
        }
        Err(anyhow!("--nft-trace: nf_tables kept answering EAGAIN to a table listing"))
    }

    fn dump_tables(&mut self) -> Result<Vec<Table>, BatchError> {
        let mut buf = Vec::new();
        let seq = self.next_seq();
        let get = NfTablesMessage::GetTable(TableMessage { attributes: vec![] });
        push(&mut buf, seq, NLM_F_REQUEST | NLM_F_DUMP, NetfilterProtoFamily::Inet, 0, get);
        self.socket.send(&buf, 0).map_err(BatchError::Io)?;
        let mut tables = Vec::new();
        loop {
            let (datagram, _) = self.socket.recv_from_full().map_err(BatchError::Io)?;
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let m = NetlinkMessage::<NetfilterMessage>::deserialize(rest)
                    .map_err(|e| BatchError::Io(std::io::Error::other(format!("parsing a netlink reply: {e}"))))?;
                rest = &rest[(m.header.length as usize).max(1).min(rest.len())..];
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok(tables),
                    NetlinkPayload::Error(e) if e.code.is_some() => return Err(BatchError::Refused(-e.raw_code())),
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)),
                        ..
                    }) => tables.push(Table::from(t)),
                    _ => {}
                }
            }
        }
    }

    /// Deletes the table; it is gone too when the table had no owner flag.
    pub fn remove(&mut self) -> anyhow::Result<()> {
        match self.batch(vec![delete_table(&self.name.clone())]) {
            Ok(()) | Err(BatchError::Refused(libc::ENOENT)) => Ok(()),
            Err(e) => Err(anyhow!("removing table inet {}: {e}", self.name)),
        }
    }

    /// Sends `messages` as one batch, each acknowledged; the first error.
    fn batch(&mut self, messages: Vec<NfTablesMessage>) -> Result<(), BatchError> {
        let mut buf = Vec::new();
        let begin = self.next_seq();
        push(
            &mut buf,
            begin,
            NLM_F_REQUEST,
            NetfilterProtoFamily::Unspec,
            NFNL_SUBSYS_NFTABLES,
            ControlMessage::BatchBegin,
        );
        let mut acks = Vec::new();
        for message in messages {
            let seq = self.next_seq();
            let flags = NLM_F_REQUEST
                | NLM_F_ACK
                | match &message {
                    NfTablesMessage::NewRule(_) => NLM_F_CREATE | NLM_F_APPEND,
                    NfTablesMessage::NewTable(_) | NfTablesMessage::NewChain(_) => NLM_F_CREATE,
                    _ => 0,
                };
            push(&mut buf, seq, flags, NetfilterProtoFamily::Inet, 0, message);
            acks.push(seq);
        }
        let end = self.next_seq();
        push(
            &mut buf,
            end,
            NLM_F_REQUEST,
            NetfilterProtoFamily::Unspec,
            NFNL_SUBSYS_NFTABLES,
            ControlMessage::BatchEnd,
        );
        self.socket.send(&buf, 0).map_err(BatchError::Io)?;

        let mut first_error = None;
        while !acks.is_empty() {
            let (datagram, _) = self.socket.recv_from_full().map_err(BatchError::Io)?;
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let message = NetlinkMessage::<NetfilterMessage>::deserialize(rest)
                    .map_err(|e| BatchError::Io(std::io::Error::other(format!("parsing a netlink reply: {e}"))))?;
                let len = (message.header.length as usize).max(1).min(rest.len());
                rest = &rest[len..];
                let NetlinkPayload::Error(e) = message.payload else { continue };
                let seq = reply_seq(&e.header).unwrap_or(message.header.sequence_number);
                if let Some(code) = e.code {
                    first_error.get_or_insert(-code.get());
                    // The batch itself was refused: nothing else comes.
                    if seq == begin {
                        acks.clear();
                    }
                }
                acks.retain(|&s| s != seq);
            }
        }
        match first_error {
            Some(errno) => Err(BatchError::Refused(errno)),
            None => Ok(()),
        }
    }

    fn next_seq(&mut self) -> u32 {
        self.seq += 1;
        self.seq
    }
}

impl Drop for TraceTable {
    fn drop(&mut self) {
        if !self.installed {
            return;
        }
        match self.remove() {
            Ok(()) => log::debug!("--nft-trace: table inet {} removed", self.name),
            Err(e) if self.owned => log::debug!("{e:#}; the kernel removes it as the socket closes"),
            Err(e) => note!("--nft-trace: {e:#}; remove it with: nft delete table inet {}", self.name),
        }
    }
}

#[derive(Debug)]
enum BatchError {
    /// The kernel answered with this errno.
    Refused(i32),
    Io(std::io::Error),
}

impl std::fmt::Display for BatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(errno) => write!(f, "the kernel refused it: {}", std::io::Error::from_raw_os_error(*errno)),
            Self::Io(e) => write!(f, "netlink: {e}"),
        }
    }
}

/// A table as the kernel lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Table {
    name: String,
    flags: u32,
}

impl From<TableMessage> for Table {
    fn from(t: TableMessage) -> Self {
        let mut table = Self { name: String::new(), flags: 0 };
        for a in t.attributes {
            match a {
                TableAttribute::Name(n) => table.name = n,
                TableAttribute::Flags(f) => table.flags = f.bits(),
                _ => {}
            }
        }
        table
    }
}

impl Table {
    /// A trace table without an owner whose skbtrace is gone.
    fn is_stale(&self) -> bool {
        let pid = self.name.strip_prefix(TABLE_PREFIX).and_then(|p| p.strip_prefix('_'));
        let Some(pid) = pid.and_then(|p| p.parse::<u32>().ok()) else { return false };
        self.flags & TableFlags::Owner.bits() == 0
            && pid != std::process::id()
            && !std::path::Path::new("/proc").join(pid.to_string()).exists()
    }
}

/// The table, its hookless chain and `meta nftrace set 1` in it.
fn create(name: &str, owner: bool) -> Vec<NfTablesMessage> {
    let flags = if owner { TableFlags::Owner } else { TableFlags::default() };
    vec![
        NfTablesMessage::NewTable(TableMessage {
            attributes: vec![TableAttribute::Name(name.into()), TableAttribute::Flags(flags)],
        }),
        NfTablesMessage::NewChain(ChainMessage {
            attributes: vec![ChainAttribute::Table(name.into()), ChainAttribute::Name(CHAIN.into())],
        }),
        NfTablesMessage::NewRule(RuleMessage {
            attributes: vec![
                RuleAttribute::Table(name.into()),
                RuleAttribute::Chain(CHAIN.into()),
                RuleAttribute::Expressions(vec![
                    Expressions::Immediate(vec![
                        Immediate::DestinationRegister(Register::Reg1),
                        Immediate::Data(DataAttribute::Value(vec![1])),
                    ])
                    .into(),
                    Expressions::Meta(vec![Meta::Key(MetaKey::NftraceBit), Meta::SourceRegister(Register::Reg1)])
                        .into(),
                ]),
            ],
        }),
    ]
}

fn delete_table(name: &str) -> NfTablesMessage {
    NfTablesMessage::DeleteTable(TableMessage { attributes: vec![TableAttribute::Name(name.into())] })
}

fn push(
    buf: &mut Vec<u8>,
    seq: u32,
    flags: u16,
    family: NetfilterProtoFamily,
    res_id: u16,
    inner: impl Into<netlink_packet_netfilter::NetfilterMessageInner>,
) {
    let mut message =
        NetlinkMessage::from(NetfilterMessage::new(NetfilterHeader::new(family, 0, res_id), inner.into()));
    message.header.flags = flags;
    message.header.sequence_number = seq;
    message.finalize();
    let start = buf.len();
    buf.resize(start + message.buffer_len(), 0);
    message.serialize(&mut buf[start..]);
}

/// The sequence number in the header an error message quotes.
fn reply_seq(header: &[u8]) -> Option<u32> {
    Some(u32::from_ne_bytes(header.get(8..12)?.try_into().ok()?))
}

fn set_reply_timeout(socket: &Socket) -> anyhow::Result<()> {
    let tv = libc::timeval { tv_sec: REPLY_TIMEOUT.as_secs() as libc::time_t, tv_usec: 0 };
    // SAFETY: setsockopt with a valid socket and a timeval of the size given.
    let ret = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    if ret != 0 {
        return Err(anyhow::Error::from(std::io::Error::last_os_error()).context("setting a netlink reply timeout"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
