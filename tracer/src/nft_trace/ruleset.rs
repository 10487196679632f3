//! A rule's chain and text by its handle, from `nft -a list table FAMILY
//! TABLE` run inside the packet's netns (`explain::evidence::Host::nft_rule`).
//! The table, not the chain: the eBPF side names the rule's chain only when
//! it finds it within `NFT_RULE_WALK_MAX` rules, the listing always does.
//!
//! nft is the one program that prints nf_tables rules as people write them
//! (iptables-nft's rules included, in nft's syntax); rendering the rule's
//! expressions from netlink ourselves would be a second, worse nft. Without
//! nft on the host the verdict names the handle only, and says why.
//! Handles are unique in a table and never reused while it exists, so the
//! text read after the drop is the rule that dropped, unless the rule was
//! deleted since (then no line has the handle).

/// A rule as `nft -a list table` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    pub chain: String,
    pub text: String,
}

/// Rule `handle` in `nft -a list table` (or `list chain`) output: the line
/// that ends in `# handle N`, without that comment, and the chain it is in.
/// Chains' own lines (`chain input { # handle 1`) are not rules.
pub fn find_rule(listing: &str, handle: u64) -> Option<Rule> {
    let want = format!("# handle {handle}");
    let mut chain = "";
    for line in listing.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("chain ") {
            chain = rest.split_whitespace().next().unwrap_or("").trim_matches('"');
            continue;
        }
        let Some(text) = line.strip_suffix(&want).map(str::trim_end) else { continue };
        if !text.is_empty() && !text.ends_with('{') {
            return Some(Rule { chain: chain.to_owned(), text: text.to_owned() });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{Rule, find_rule};

    /// `nft -a list table inet filter` (nftables 1.0.6), and an iptables-nft
    /// table as nft lists it.
    const LISTING: &str = "table inet filter {\n\
        \tchain input { # handle 1\n\
        \t\ttype filter hook input priority filter; policy accept;\n\
        \t\tct state established accept # handle 3\n\
        \t\tudp dport 4000 counter packets 1 bytes 30 drop # handle 4\n\
        \t}\n\
        \tchain blocked { # handle 5\n\
        \t\tip saddr 10.9.0.0/16 drop # handle 6\n\
        \t}\n\
        }\n";
    const IPTABLES_NFT: &str = "# Warning: table ip filter is managed by iptables-nft, do not touch!\n\
        table ip filter {\n\
        \tchain INPUT { # handle 1\n\
        \t\ttype filter hook input priority filter; policy accept;\n\
        \t\tmeta l4proto udp udp dport 4001 counter packets 1 bytes 33 drop # handle 14\n\
        \t}\n\
        }\n";

    #[test]
    fn finds_the_rule_and_its_chain_by_handle() {
        let rule = |listing, handle| find_rule(listing, handle).map(|Rule { chain, text }| (chain, text));
        let r = |chain: &str, text: &str| Some((chain.to_owned(), text.to_owned()));
        assert_eq!(rule(LISTING, 4), r("input", "udp dport 4000 counter packets 1 bytes 30 drop"));
        assert_eq!(rule(LISTING, 3), r("input", "ct state established accept"));
        assert_eq!(rule(LISTING, 6), r("blocked", "ip saddr 10.9.0.0/16 drop"));
        assert_eq!(
            rule(IPTABLES_NFT, 14),
            r("INPUT", "meta l4proto udp udp dport 4001 counter packets 1 bytes 33 drop")
        );
        // Chains' own handles are not rules; a deleted rule has no line; 4 is not 14.
        assert_eq!(rule(LISTING, 1), None);
        assert_eq!(rule(LISTING, 5), None);
        assert_eq!(rule(LISTING, 40), None);
        assert_eq!(rule(IPTABLES_NFT, 4), None);
    }
}
