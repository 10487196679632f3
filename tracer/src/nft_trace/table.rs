//! The trace table: `table inet skbtrace_nft_trace { flags owner; chain
//! trace { meta nftrace set 1 } }` in skbtrace's own netns. Its chain has
//! no hook, so no packet ever runs it; its rule exists only to turn on
//! nf_tables's `nft_trace_enabled` static key (`nft_meta_set_init`).
//!
//! Contract:
//! - Built and sent over netlink with `netlink-packet-netfilter` (already
//!   skbtrace's ctnetlink crate, MIT like us, and it types nf_tables's
//!   messages), not the `nft` program: installing needs no program on the
//!   host, errors come back as errno values we can explain, and the
//!   `owner` flag needs a socket that lives as long as skbtrace. (rustables,
//!   the other nf_tables crate, is GPL-3.0; nftnl needs libnftnl.)
//! - [`TraceTable::install`] first deletes a table of the same name (one
//!   left by a run killed on a kernel without owner tables); one owned by a
//!   live process (another `skbtrace --nft-trace`) is an error. Then one
//!   batch creates the table (with `NFT_TABLE_F_OWNER`, or without it on a
//!   kernel that refuses the flag), the chain and the rule.
//! - The first message loads nf_tables if it is a module not loaded yet
//!   (the kernel asks modprobe for `nfnetlink-subsys-10`); a kernel that
//!   cannot load it refuses the batch with EOPNOTSUPP: [`NoNfTables`].
//! - Dropping it deletes the table (and closes the socket, which deletes an
//!   owner table anyway).
//! - Every message is acknowledged; a reply that does not come within 5 s
//!   is an error rather than a hang.

use std::{os::fd::AsRawFd as _, time::Duration};

use anyhow::{Context as _, anyhow, bail};
use netlink_packet_core::{NLM_F_ACK, NLM_F_APPEND, NLM_F_CREATE, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterProtoFamily,
    nftables::{
        ChainAttribute, ChainMessage, DataAttribute, Expressions, Immediate, Meta, MetaKey, NfTablesMessage, Register,
        RuleAttribute, RuleMessage, TableAttribute, TableFlags, TableMessage,
    },
    none::ControlMessage,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

/// The table's and chain's names.
pub const TABLE: &str = "skbtrace_nft_trace";
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
    /// Whether the kernel took the owner flag.
    pub owned: bool,
    /// Whether the table was created (and so is removed on drop).
    installed: bool,
}

impl TraceTable {
    pub fn install() -> anyhow::Result<Self> {
        let socket = Socket::new(NETLINK_NETFILTER).map_err(|e| match e.raw_os_error() {
            Some(libc::EPROTONOSUPPORT) => anyhow::Error::from(NoNfTables(
                "no netfilter netlink (nfnetlink is not built or cannot be loaded)".into(),
            )),
            _ => anyhow::Error::from(e).context("opening a netfilter netlink socket"),
        })?;
        let mut table = Self { socket, seq: 0, owned: false, installed: false };
        table.socket.bind_auto().context("binding the netfilter netlink socket")?;
        table.socket.connect(&SocketAddr::new(0, 0)).context("connecting the netfilter netlink socket")?;
        set_reply_timeout(&table.socket)?;

        match table.batch(vec![delete_table()]) {
            Ok(()) => note!("--nft-trace: removed table inet {TABLE}, left by an earlier run"),
            Err(BatchError::Refused(libc::ENOENT)) => {}
            Err(BatchError::Refused(libc::EPERM)) => bail!(
                "--nft-trace: table inet {TABLE} belongs to another process (another skbtrace --nft-trace?): \
                 run one at a time"
            ),
            Err(BatchError::Refused(libc::EOPNOTSUPP)) => {
                return Err(NoNfTables(
                    "the kernel refused nf_tables's messages (module nf_tables missing or not \
                                      loadable: try modprobe nf_tables)"
                        .into(),
                )
                .into());
            }
            Err(e) => return Err(anyhow!("--nft-trace: removing a stale table inet {TABLE}: {e}")),
        }
        // Owner tables are Linux ≥ 5.12; older kernels refuse the flag.
        match table.batch(create(true)) {
            Ok(()) => table.owned = true,
            Err(BatchError::Refused(libc::EOPNOTSUPP)) => {
                table.batch(create(false)).map_err(|e| anyhow!("--nft-trace: creating table inet {TABLE}: {e}"))?
            }
            Err(e) => return Err(anyhow!("--nft-trace: creating table inet {TABLE}: {e}")),
        }
        table.installed = true;
        Ok(table)
    }

    /// Deletes the table; it is gone too when the table had no owner flag.
    pub fn remove(&mut self) -> anyhow::Result<()> {
        match self.batch(vec![delete_table()]) {
            Ok(()) | Err(BatchError::Refused(libc::ENOENT)) => Ok(()),
            Err(e) => Err(anyhow!("removing table inet {TABLE}: {e}")),
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
            Ok(()) => log::debug!("--nft-trace: table inet {TABLE} removed"),
            Err(e) if self.owned => log::debug!("{e:#}; the kernel removes it as the socket closes"),
            Err(e) => note!("--nft-trace: {e:#}; remove it with: nft delete table inet {TABLE}"),
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

/// The table, its hookless chain and `meta nftrace set 1` in it.
fn create(owner: bool) -> Vec<NfTablesMessage> {
    let flags = if owner { TableFlags::Owner } else { TableFlags::default() };
    vec![
        NfTablesMessage::NewTable(TableMessage {
            attributes: vec![TableAttribute::Name(TABLE.into()), TableAttribute::Flags(flags)],
        }),
        NfTablesMessage::NewChain(ChainMessage {
            attributes: vec![ChainAttribute::Table(TABLE.into()), ChainAttribute::Name(CHAIN.into())],
        }),
        NfTablesMessage::NewRule(RuleMessage {
            attributes: vec![
                RuleAttribute::Table(TABLE.into()),
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

fn delete_table() -> NfTablesMessage {
    NfTablesMessage::DeleteTable(TableMessage { attributes: vec![TableAttribute::Name(TABLE.into())] })
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
mod tests {
    use super::*;

    /// The rule `nft --debug=netlink` shows for `meta nftrace set 1`:
    /// `[ immediate reg 1 0x00000001 ] [ meta set nftrace with reg 1 ]`.
    #[test]
    fn the_batch_holds_table_chain_and_rule() {
        let mut buf = Vec::new();
        for (i, m) in create(true).into_iter().enumerate() {
            push(&mut buf, i as u32 + 1, NLM_F_REQUEST | NLM_F_ACK, NetfilterProtoFamily::Inet, 0, m);
        }
        let mut rest = buf.as_slice();
        let mut kinds = Vec::new();
        while !rest.is_empty() {
            let m = NetlinkMessage::<NetfilterMessage>::deserialize(rest).expect("parses back");
            rest = &rest[m.header.length as usize..];
            kinds.push((m.header.message_type, m.header.sequence_number));
        }
        // (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWTABLE, NEWCHAIN, NEWRULE.
        assert_eq!(kinds, [(0x0a00, 1), (0x0a03, 2), (0x0a06, 3)]);
        let text = format!("{:?}", create(true));
        assert!(text.contains("Owner") && text.contains("NftraceBit") && text.contains("Value([1])"), "{text}");
        assert!(!format!("{:?}", create(false)).contains("Owner"));
        assert_eq!(reply_seq(&[0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0]), Some(7));
    }

    /// The tables of this thread's netns: (name, flags).
    fn tables_here() -> Vec<(String, u32)> {
        use netlink_packet_core::NLM_F_DUMP;
        use netlink_packet_netfilter::NetfilterMessageInner;
        let socket = Socket::new(NETLINK_NETFILTER).expect("socket");
        socket.connect(&SocketAddr::new(0, 0)).expect("connect");
        let mut buf = Vec::new();
        let get = NfTablesMessage::GetTable(TableMessage { attributes: vec![] });
        push(&mut buf, 1, NLM_F_REQUEST | NLM_F_DUMP, NetfilterProtoFamily::Inet, 0, get);
        socket.send(&buf, 0).expect("send");
        let mut tables = Vec::new();
        loop {
            let (datagram, _) = socket.recv_from_full().expect("recv");
            let mut rest = datagram.as_slice();
            while !rest.is_empty() {
                let m = NetlinkMessage::<NetfilterMessage>::deserialize(rest).expect("parse");
                rest = &rest[(m.header.length as usize).min(rest.len())..];
                match m.payload {
                    NetlinkPayload::Done(_) => return tables,
                    NetlinkPayload::InnerMessage(NetfilterMessage {
                        inner: NetfilterMessageInner::NfTables(NfTablesMessage::NewTable(t)),
                        ..
                    }) => {
                        let mut entry = (String::new(), 0);
                        for a in t.attributes {
                            match a {
                                TableAttribute::Name(n) => entry.0 = n,
                                TableAttribute::Flags(f) => entry.1 = f.bits(),
                                _ => {}
                            }
                        }
                        tables.push(entry);
                    }
                    NetlinkPayload::Error(e) => panic!("dumping tables: {}", e.to_io()),
                    _ => {}
                }
            }
        }
    }

    /// In a netns of its own (nf_tables's static key is global: tracing is
    /// on for the moments the test holds the table). Needs root and
    /// nf_tables; skipped without them, except under CI with root.
    #[test]
    fn installs_refuses_a_second_owner_and_removes() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("SKIPPED: not root");
            return;
        }
        std::thread::spawn(|| {
            // SAFETY: unshare on this thread only.
            assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
            let table = match TraceTable::install() {
                Ok(t) => t,
                Err(e) if e.downcast_ref::<NoNfTables>().is_some() && std::env::var_os("CI").is_none() => {
                    eprintln!("SKIPPED: {e:#}");
                    return;
                }
                Err(e) => panic!("{e:#}"),
            };
            let owner = TableFlags::Owner.bits();
            assert!(table.owned, "this kernel takes owner tables");
            assert_eq!(tables_here(), [(TABLE.to_owned(), owner)]);
            let second = TraceTable::install().err().expect("the table has an owner");
            assert!(format!("{second:#}").contains("belongs to another process"), "{second:#}");
            assert_eq!(tables_here().len(), 1, "the first run's table stays");
            drop(table);
            assert_eq!(tables_here(), []);
            // The owner flag: closing the socket (a SIGKILL) removes it too.
            let table = TraceTable::install().expect("again");
            let TraceTable { socket, .. } = &table;
            // SAFETY: closes the socket's descriptor; `forget` below keeps it from being closed twice.
            unsafe { libc::close(socket.as_raw_fd()) };
            std::mem::forget(table);
            assert_eq!(tables_here(), [], "the kernel removed the owner's table");
        })
        .join()
        .expect("the test thread");
    }
}
