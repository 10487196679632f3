//! Nothing here: the end-to-end tests live in `e2e/` (one test binary), the
//! scripts they run inside the VM in `vm/`.
