//! Arbitrary text as the YAML config: loading must give a config or a list of errors (each
//! naming its key path), never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pauditd_config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_str(text) {
        Ok(c) => {
            let _ = c.daemon_errors();
            let _ = c.output.enabled_names();
        }
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an error says what is wrong");
        }
    }
});
