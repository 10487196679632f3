//! Against the running kernel's BTF, which every supported machine has.
use super::*;

fn kernel() -> Option<KernelBtf> {
    match KernelBtf::open() {
        Ok(k) => Some(k),
        Err(_) if std::env::var_os("CI").is_some() => panic!("{VMLINUX} missing under CI"),
        Err(_) => {
            eprintln!("SKIPPED: {VMLINUX} missing");
            None
        }
    }
}

#[test]
fn finds_skb_functions_with_positions() {
    let Some(k) = kernel() else { return };
    let funcs = k.skb_functions();
    assert!(funcs.len() > 500, "only {} skb functions", funcs.len());
    let pos = |name: &str| funcs.iter().find(|f| f.name == name).map(|f| f.skb.0 + 1);
    assert_eq!(pos("ip_rcv"), Some(1));
    assert_eq!(pos("netif_receive_skb"), Some(1));
    assert_eq!(pos("__netif_receive_skb_core"), None, "takes struct sk_buff **, not *");
    // sk_skb_reason_drop(sk, skb, reason) on ≥ 6.11, kfree_skb_reason(skb, reason) before.
    assert!(pos("sk_skb_reason_drop") == Some(2) || pos("kfree_skb_reason") == Some(1));
    assert!(funcs.iter().all(|f| (0..5).contains(&f.skb.0) && f.module.is_empty()));
}

#[test]
fn offsets_are_those_of_this_kernel() {
    let Some(k) = kernel() else { return };
    let o = k.offsets().expect("offsets");
    // Plausible, distinct, and inside struct sk_buff (< 256 bytes on every kernel).
    for (name, off) in [("head", o.skb_head), ("data", o.skb_data), ("len", o.skb_len), ("dev", o.skb_dev)] {
        assert!(off < 256, "sk_buff.{name} at {off}");
    }
    assert_ne!(o.skb_head, o.skb_data);
    assert_ne!(o.skb_mac_header, o.skb_network_header);
    assert_eq!(o.skb_network_header, o.skb_mac_header - 2, "mac_header follows network_header in sk_buff");
    assert_ne!(o.dev_nd_net, OFFSET_NONE);
    assert_ne!(o.net_inum, OFFSET_NONE);
    // Distinct fields inside struct net_device (a few KiB on every kernel).
    assert!(o.dev_name != o.dev_mtu && o.dev_name < 4096 && o.dev_mtu < 4096, "{o:?}");
}

#[test]
fn drop_reasons_come_from_the_kernel_enum() {
    let Some(k) = kernel() else { return };
    let names = k.enum_names("skb_drop_reason");
    let no_socket = names.iter().find(|(_, n)| *n == "SKB_DROP_REASON_NO_SOCKET").map(|(v, _)| *v);
    // 2 on 6.1, 3 on 6.18: whichever it is, it comes from BTF.
    assert!(matches!(no_socket, Some(2..=4)), "{no_socket:?}");
    assert_eq!(names.get(&0).map(String::as_str), Some("SKB_NOT_DROPPED_YET"));
}

#[test]
fn kernel_btf_from_a_file_with_modules_beside_it() {
    let Some(k) = kernel() else { return };
    let dir = std::env::temp_dir().join(format!("skbtrace-kernel-btf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("vmlinux-6.x.btf");
    std::fs::copy(VMLINUX, &file).unwrap();
    // A module that is loaded, when there is one, copied beside it.
    let module = KernelBtf::open().unwrap().available_modules().unwrap().into_iter().next();
    if let Some(m) = &module {
        std::fs::copy(Path::new(SYS_BTF_DIR).join(m), dir.join(m)).unwrap();
    }

    let mut external = KernelBtf::open_from(Some(&file)).expect("opening a copy of vmlinux's BTF");
    assert!(external.is_external() && !k.is_external());
    assert_eq!(external.modules_dir(), dir);
    assert_eq!(external.skb_functions(), k.skb_functions(), "the same BTF, the same functions");
    assert_eq!(external.offsets().unwrap().skb_len, k.offsets().unwrap().skb_len);
    assert_eq!(external.available_modules().unwrap(), module.iter().cloned().collect::<Vec<_>>());

    let mut wanted: Vec<String> = module.iter().cloned().collect();
    wanted.push("no_such_module".into());
    let skipped = external.add_modules(&wanted).expect("a missing module is skipped, not an error");
    assert_eq!(skipped, ["no_such_module"]);
    assert_eq!(external.modules.len(), module.iter().count(), "the module beside the file is read");
    // Without --kernel-btf, a module that is not loaded is an error naming it.
    let mut own = KernelBtf::open_from(None).unwrap();
    let err = own.add_modules(&["no_such_module".into()]).unwrap_err();
    assert!(format!("{err:#}").contains("no_such_module"), "{err:#}");

    let missing = dir.join("missing.btf");
    let err = KernelBtf::open_from(Some(&missing)).err().expect("an error");
    assert!(format!("{err:#}").contains(&missing.display().to_string()), "{err:#}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn finds_skb_tracepoints() {
    let Some(k) = kernel() else { return };
    let tps = k.skb_tracepoints();
    let pos = |name: &str| tps.iter().find(|t| t.0 == name).map(|t| t.1);
    assert_eq!(pos("kfree_skb"), Some(SkbArg(0)));
    assert_eq!(pos("netif_receive_skb"), Some(SkbArg(0)));
    assert_eq!(pos("net_dev_xmit"), Some(SkbArg(0)));
    assert!(pos("tcp_receive_reset").is_none(), "tcp_receive_reset takes a sock, not an skb");
}
