//! The `fjord-broker` binary as a user starts it.

use std::process::Command;

fn run(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_fjord-broker"))
        .args(args)
        .env("FJORD_LOG", "error")
        .output()
        .expect("the binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

#[test]
fn an_unknown_setting_stops_start_up_naming_it() {
    let (code, err) = run(&["--override", "log.retenshun.ms=5"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("log.retenshun.ms") && err.contains("unknown setting"),
        "{err}"
    );
}

#[test]
fn an_invalid_value_stops_start_up_naming_the_setting() {
    let (code, err) = run(&["--override", "num.partitions=three"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("num.partitions"), "{err}");
}

#[test]
fn a_bad_properties_file_line_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("server.properties");
    std::fs::write(&file, "node.id=1\nthis line has no separator\n").unwrap();
    let (code, err) = run(&[file.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn help_explains_the_usage() {
    let (code, err) = run(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(err.contains("--override key=value"), "{err}");
}
