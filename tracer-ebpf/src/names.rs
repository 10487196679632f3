//! Compile-time checks that every program and map carries the name user
//! space looks it up by (`tracer_common::names`): a rename on one side only
//! fails to build.

/// `check_program!(ident, NAME)`: `ident` is a program here, and is `NAME`.
macro_rules! check_program {
    ($ident:ident, $name:expr) => {
        const _: () = {
            // Names the function, so renaming it without this line fails.
            let _ = $ident;
            assert!(
                tracer_common::names::same(stringify!($ident), $name),
                "program name differs from tracer_common::names"
            );
        };
    };
}

/// `check_map!(IDENT, NAME)`: `IDENT` is a map or global here, and is `NAME`.
macro_rules! check_map {
    ($ident:ident, $name:expr) => {
        const _: () = {
            // Names the static, so renaming it without this line fails.
            let _ = &raw const $ident;
            assert!(
                tracer_common::names::same(stringify!($ident), $name),
                "map name differs from tracer_common::names"
            );
        };
    };
}

pub(crate) use check_map;
pub(crate) use check_program;
