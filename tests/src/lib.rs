//! The integration suites of exec-server live in `tests/`; this crate also builds the
//! server binary (`exec-server-under-test`, from `exec-server/src/main.rs`) so that the
//! suites always run against a fresh build of the real binary.
