//! Any bytes as metadata from the network: the updater's client workflow, starting from a
//! valid trusted root, returns an error or a refreshed state, never panics. The first byte
//! chooses which file the server answers with the rest (the others are "not found").
#![no_main]

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use herald_updater::transport::{Body, FetchError, Transport};
use libfuzzer_sys::fuzz_target;
use url::Url;

const FILES: [&str; 4] = [
    "2.root.json",
    "timestamp.json",
    "1.snapshot.json",
    "1.targets.json",
];

struct OneFile {
    name: &'static str,
    body: Bytes,
}

impl Transport for OneFile {
    fn open<'a>(&'a self, url: &'a Url, _offset: u64) -> BoxFuture<'a, Result<Body, FetchError>> {
        Box::pin(async move {
            if !url.path().ends_with(self.name) {
                return Err(FetchError::NotFound { url: url.clone() });
            }
            let chunk = Ok(self.body.clone());
            Ok(Body {
                offset: 0,
                stream: Box::pin(futures_util::stream::iter([chunk])),
            })
        })
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let transport = OneFile {
        name: FILES[usize::from(selector) % FILES.len()],
        body: Bytes::copy_from_slice(rest),
    };
    let dir = tempfile::tempdir().expect("temporary folder");
    herald_updater::tuf::init_trusted_root(dir.path(), include_bytes!("../fixtures/root.json"))
        .expect("the fixture root is valid");
    let url = Url::parse("https://repo.invalid/metadata/").expect("constant URL");
    let mut client =
        herald_updater::tuf::Client::new(Arc::new(transport), url, dir.path().to_path_buf());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).expect("valid time");
    let _ = runtime.block_on(client.refresh(now));
});
