//! Headless Chromium pages driven over the DevTools protocol (the `headless_chrome` crate),
//! and bounded polling of the Moose page's `window.moose` diagnostics; with a raw WebSocket
//! peer beside the pages ([`raw_peer`]) and the measurements that tell their tone from noise
//! ([`signal`]).

pub mod raw_peer;
pub mod signal;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use headless_chrome::protocol::cdp::Runtime::RemoteObjectSubtype;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

/// How long any single condition may take. Generous: two browsers rendering audio at 200 kHz
/// and the relay share two cores with the rest of the test suite.
pub const DEADLINE: Duration = Duration::from_secs(60);

/// Finds Debian's chromium, or fails the test saying how to install it (never skips).
pub fn chromium() -> PathBuf {
    let on_path: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("chromium"))
                .collect()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain([PathBuf::from("/usr/bin/chromium")])
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "chromium is not installed: this test needs a real browser. \
                 Run scripts/install-browser.sh (as root), then run the test again."
            )
        })
}

/// One headless Chromium (its own process and profile, so each has its own fake microphone)
/// with one tab.
pub struct Page {
    pub name: &'static str,
    tab: Arc<Tab>,
    // Dropping the browser kills its process; keep it alive as long as the tab.
    _browser: Browser,
}

impl std::fmt::Debug for Page {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Page")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Page {
    /// Starts Chromium with `wav` as its microphone and a fresh profile in `profile`, and
    /// opens `url`.
    pub fn open(name: &'static str, profile: &Path, wav: &Path, url: &str) -> Page {
        let fake_mic = OsString::from(format!(
            "--use-file-for-fake-audio-capture={}",
            wav.display()
        ));
        let mut args: Vec<&std::ffi::OsStr> = [
            "--disable-quic",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
        ]
        .iter()
        .map(std::ffi::OsStr::new)
        .collect();
        args.push(&fake_mic);
        let options = LaunchOptions {
            path: Some(chromium()),
            headless: true,
            sandbox: false, // we run as root in CI, where Chromium refuses its sandbox
            enable_gpu: false,
            user_data_dir: Some(profile.to_path_buf()),
            idle_browser_timeout: Duration::from_secs(300),
            args,
            ..LaunchOptions::default()
        };
        let browser =
            Browser::new(options).unwrap_or_else(|e| panic!("{name}: start chromium: {e:#}"));
        let tab = browser
            .new_tab()
            .unwrap_or_else(|e| panic!("{name}: open a tab: {e:#}"));
        tab.navigate_to(url)
            .and_then(|tab| tab.wait_until_navigated())
            .unwrap_or_else(|e| panic!("{name}: load {url}: {e:#}"));
        Page {
            name,
            tab,
            _browser: browser,
        }
    }

    /// Evaluates `expr` in the page and returns its JSON value (`Null` for `undefined`).
    pub fn eval(&self, expr: &str) -> Result<Value, String> {
        let object = self
            .tab
            .evaluate(expr, false)
            .map_err(|e| format!("{e:#}"))?;
        if matches!(object.subtype, Some(RemoteObjectSubtype::Error)) {
            return Err(object.description.unwrap_or_else(|| "exception".into()));
        }
        Ok(object.value.unwrap_or(Value::Null))
    }

    /// The page's `window.moose` diagnostics as JSON, or `Null` before the script ran.
    pub fn diag(&self) -> Value {
        self.eval("JSON.stringify(window.moose || null)")
            .ok()
            .and_then(|v| v.as_str().and_then(|s| serde_json::from_str(s).ok()))
            .unwrap_or(Value::Null)
    }

    /// A number from the diagnostics (0 when missing).
    pub fn count(&self, field: &str) -> u64 {
        self.diag()[field].as_u64().unwrap_or(0)
    }

    /// `recentPlayback(n)` as floats.
    pub fn recent_playback(&self, n: usize) -> Vec<f64> {
        let value = self
            .eval(&format!("JSON.stringify(window.moose.recentPlayback({n}))"))
            .unwrap_or_else(|e| panic!("{}: recentPlayback: {e}", self.name));
        let text = value.as_str().unwrap_or("[]");
        serde_json::from_str::<Vec<f64>>(text)
            .unwrap_or_else(|e| panic!("{}: recentPlayback is no number array: {e}", self.name))
    }
}

/// Polls `check` every 100 ms until it yields a value, for at most [`DEADLINE`]. On timeout
/// it fails the test with `what` and every page's diagnostics.
pub fn wait_for<T>(what: &str, pages: &[&Page], mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        if start.elapsed() > DEADLINE {
            panic!(
                "timed out after {:?} waiting for {what}\n{}",
                DEADLINE,
                describe(pages)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every page's diagnostics, one per line, for failure messages.
pub fn describe(pages: &[&Page]) -> String {
    pages
        .iter()
        .map(|p| format!("page {}: {}", p.name, p.diag()))
        .collect::<Vec<_>>()
        .join("\n")
}
