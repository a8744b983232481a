//! Any bytes as a zip archive: the updater's entry checks return a verdict, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(data)) {
        let _ = herald_updater::zipcheck::check_archive(&mut archive, &Default::default());
    }
});
