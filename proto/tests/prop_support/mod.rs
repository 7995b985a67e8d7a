//! What the property tests share: how many cases to run and where failures are kept.

use proptest::prelude::ProptestConfig;
use proptest::test_runner::FileFailurePersistence;

/// `cases` per property, unless `PROPTEST_CASES` asks for more (a deep local run:
/// `PROPTEST_CASES=10000 cargo nextest run -p moose-proto --test prop_codecs`). Failures are
/// kept in `tests/<test>.proptest-regressions` beside each test file and replayed first on
/// every run.
pub(crate) fn config(cases: u32) -> ProptestConfig {
    let mut config = ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    };
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = cases;
    }
    config
}
