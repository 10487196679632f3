use super::*;

fn resolver<'a>(k: &'a Kallsyms, r: &'a DropReasons, timestamp: Timestamp) -> Resolver<'a> {
    Resolver::new(k, &[], r, None, Wanted { timestamp, netns_names: false, tunnel: false })
}

fn at(skb: u64, ktime_ns: u64, flags: u8) -> Event {
    let mut ev = Event::zeroed();
    (ev.skb, ev.ktime_ns, ev.flags) = (skb, ktime_ns, flags);
    ev
}

#[test]
fn relative_time_is_per_skb_and_ends_with_it() {
    let (k, r) = (Kallsyms::parse(""), DropReasons::from_names([]));
    let mut res = resolver(&k, &r, Timestamp::Relative);
    let times: Vec<_> = [at(1, 100, 0), at(2, 150, 0), at(1, 175, 0), at(1, 200, FLAG_FREED), at(1, 300, 0)]
        .into_iter()
        .map(|ev| res.resolve(ev, None).time)
        .collect();
    // Its first event, another skb's, 75 after its first, 25 after that and
    // freed; then the address again, a new skb.
    let want = [0, 0, 75, 25, 0].map(|d| Some(Time::Delta(d)));
    assert_eq!(times, want);
}

#[test]
fn current_is_kernel_time_and_absolute_adds_the_wall_clock() {
    let (k, r) = (Kallsyms::parse(""), DropReasons::from_names([]));
    assert_eq!(resolver(&k, &r, Timestamp::Current).resolve(at(1, 7, 0), None).time, Some(Time::Kernel(7)));
    let mut abs = resolver(&k, &r, Timestamp::Absolute);
    let Some(Time::Absolute { wall_ns, ktime_ns: 7 }) = abs.resolve(at(1, 7, 0), None).time else { panic!() };
    assert_eq!(wall_ns, 7 + abs.boot_offset_ns());
    assert_eq!(resolver(&k, &r, Timestamp::None).resolve(at(1, 7, 0), None).time, None);
}
