//! What each mistake is told: the error kind, the operand it names, and the hint.

use super::compile;
use super::fake::Fake;
use crate::filter::skb_expr::SkbExprError;

fn error(expr: &str) -> SkbExprError {
    match compile(expr, &Fake::new()) {
        Ok(_) => panic!("{expr}: compiled"),
        Err(e) => e,
    }
}

/// The error's message, which must contain every one of `parts`.
fn message(expr: &str, parts: &[&str]) -> SkbExprError {
    let e = error(expr);
    let text = e.to_string();
    for part in parts {
        assert!(text.contains(part), "{expr}: {text:?} lacks {part:?}");
    }
    e
}

#[test]
fn unknown_fields_name_the_type_and_a_near_miss() {
    let e = message("skb->lenx > 1", &["`skb->lenx`", "struct sk_buff has no member `lenx`", "did you mean `len`?"]);
    assert!(matches!(e, SkbExprError::UnknownField { suggestion: Some(ref s), .. } if s == "len"));
    // Members of anonymous unions count.
    message("skb->hahs == 1", &["did you mean `hash`?"]);
    message("skb->dev->ifindx == 1", &["struct net_device has no member `ifindx`", "`ifindex`"]);
    let e = error("skb->zzzzzz == 1");
    assert!(matches!(e, SkbExprError::UnknownField { suggestion: None, .. }), "{e:?}");
}

#[test]
fn access_operators_must_fit_the_operand() {
    message("skb->dev.ifindex == 1", &["`skb->dev`", "struct net_device *", "use `->` instead of `.`"]);
    message("skb.len == 1", &["use `->` instead of `.`"]);
    message("skb->dev->nd_net->net == 0", &["possible_net_t", "use `.` instead of `->`"]);
    message("skb->len->x == 1", &["`skb->len`", "u32", "not a pointer"]);
    message("skb->head->x == 1", &["void *"]);
    message("(skb->len + 1)->x == 1", &["computed value"]);
    message("skb->cb[8] == 1", &["index 8 is out of range"]);
    message("skb->cb[-1] == 1", &["index -1 is out of range"]);
    message("skb->cb[skb->len] == 1", &["array indices must be constants"]);
    message("skb->len[0] == 1", &["cannot be indexed"]);
    message("skb->pkt_type->x == 1", &["bitfield"]);
}

#[test]
fn values_must_have_a_type_the_operator_takes() {
    message("skb", &["`skb`", "test one of its fields"]);
    message("skb->cb == 1", &["`skb->cb`", "char[8]", "an array"]);
    message("skb->dev->nd_net == 1", &["possible_net_t", "a struct or union"]);
    message("skb->dev + 1 > 0", &["`skb->dev`", "pointers can be compared and tested"]);
    message("-skb->sk == 0", &["pointers can be compared"]);
    message("skb->len == \"x\"", &["only a char array can be compared with a string"]);
    message("skb->dev->name < \"eth0\"", &["a string can only be compared (== or !=)"]);
    message("skb->dev->name == \"a-sixteen-bytes!x\"", &["holds at most 16 bytes"]);
    message("skb->cb == \"a\\0b\"", &["NUL byte"]);
}

#[test]
fn names_are_skb_null_or_enumerators() {
    message("FOO == 1", &["unknown name `FOO`"]);
    let e = message("skb->state == DUP", &["`DUP`", "enum left", "enum right"]);
    assert!(matches!(e, SkbExprError::AmbiguousName { .. }));
}

#[test]
fn a_comparison_inside_a_bitwise_operator_is_refused_with_the_fix() {
    let e = error("skb->mark & 0xff == 0x10");
    assert_eq!(
        e,
        SkbExprError::Precedence {
            expr: "skb->mark & 0xff == 0x10".to_owned(),
            suggestion: "(skb->mark & 0xff) == 0x10".to_owned()
        }
    );
    message("skb->len == 1 | skb->mark", &["`skb->len == (1 | skb->mark)`"]);
    // Parenthesized either way, it is what the user wrote.
    assert!(compile("skb->mark & (0xff == 0x10)", &Fake::new()).is_ok());
    assert!(compile("(skb->len == 1) | (skb->mark == 2)", &Fake::new()).is_ok());
}

#[test]
fn syntax_errors_say_where() {
    let at = |expr: &str| match error(expr) {
        SkbExprError::Syntax { at, message } => (at, message),
        other => panic!("{expr}: {other:?}"),
    };
    assert_eq!(at("skb->len >").0, 10);
    assert_eq!(at("skb->len $ 1"), (9, "unexpected character `$`".to_owned()));
    assert!(at("skb->len > 017").1.contains("0o17"));
    assert!(at("(skb->len > 1").1.contains("expected `)`"));
    assert!(at("skb->len > 1)").1.contains("after a complete expression"));
    assert!(at("skb-> > 1").1.contains("member name"));
    assert!(at("").1.contains("empty"));
    assert!(at("skb->dev->name == \"eth0").1.contains("unterminated"));
    assert!(at("0x == 1").1.contains("bad integer"));
    assert!(at("99999999999999999999 == 1").1.contains("bad integer"));
    let deep = format!("{}1{}", "(".repeat(100), ")".repeat(100));
    assert!(at(&deep).1.contains("nested"));
}

#[test]
fn oversized_expressions_are_too_large() {
    // Each term is three reads, some 25 instructions.
    let expr = vec!["skb->dev->nd_net.net->inum"; 200].join(" || ");
    assert!(matches!(error(&expr), SkbExprError::TooLarge { insns, .. } if insns > 4096));
    let expr = vec!["1"; 258].join(" + ");
    assert!(matches!(error(&expr), SkbExprError::Syntax { message, .. } if message.contains("256 operators")));
    // Pending left operands take stack: 16 nested right operands need 128 bytes past the buffer.
    let deep = (0..16).fold("skb->len".to_owned(), |acc, _| format!("skb->len + ({acc})"));
    assert!(matches!(error(&deep), SkbExprError::TooLarge { stack, .. } if stack > 128));
}
