//! The relay's configuration file (`--config FILE`, TOML): any text is either refused with a
//! `ConfigError` or loaded, and whatever loads and validates renders through `check-config`
//! without ever printing an apikey it holds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use moose_relay::config::{Config, file::load_file_text, show};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(loaded) = load_file_text(text) else {
        return;
    };
    let Ok(config) = Config::from_args(&loaded.cli.run, &loaded.sources, &[0, 1]) else {
        return;
    };
    let shown = show::render(&loaded.cli.run, &config, &loaded.sources);
    for key in loaded
        .cli
        .run
        .apikey
        .iter()
        .flat_map(|keys| keys.split(','))
    {
        // Well-formed keys are at least 16 characters; shorter ones are refused above.
        if key.len() >= 16 {
            assert!(
                !shown.contains(key),
                "check-config printed an apikey:\n{shown}"
            );
        }
    }
});
