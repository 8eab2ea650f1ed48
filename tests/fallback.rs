//! With io_uring made unavailable (COREWAL_DISABLE_IO_URING, the switch the
//! ring setup honours), AUTO falls back to the blocking backend and says why,
//! and asking for io_uring is refused. Its own test binary: it sets an
//! environment variable for the whole process.

use corewal::{Backend, Error, Manager, Options};

#[test]
fn auto_falls_back_and_io_uring_is_unsupported_when_rings_cannot_be_set_up() {
    // SAFETY: this binary runs only this test; nothing reads the environment
    // concurrently.
    unsafe { std::env::set_var("COREWAL_DISABLE_IO_URING", "1") };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("wal");
    let opts = Options {
        num_cores: 1,
        segment_bytes: 1 << 20,
        ..Options::default()
    };
    let m = Manager::open(&dir, &opts).unwrap();
    assert_eq!(m.backend().backend, Backend::Sync);
    let reason = m.backend().fallback_reason.clone().unwrap();
    assert!(reason.contains("COREWAL_DISABLE_IO_URING"), "{reason}");
    m.writer(0).unwrap().append_put(b"k", b"v").unwrap();
    m.writer(0).unwrap().sync().unwrap();
    m.close().unwrap();
    drop(m);

    let uring = Options {
        backend: Backend::IoUring,
        ..opts
    };
    let err = Manager::open(&dir, &uring).err().unwrap();
    assert!(matches!(err, Error::Unsupported(_)), "{err}");

    // The C ABI answers the same.
    let c_dir = std::ffi::CString::new(dir.to_str().unwrap()).unwrap();
    let mut o = std::mem::MaybeUninit::<corewal::ffi::cw_options>::uninit();
    corewal::ffi::cw_options_init(o.as_mut_ptr(), size_of::<corewal::ffi::cw_options>());
    // SAFETY: cw_options_init filled every field.
    let mut o = unsafe { o.assume_init() };
    let mut m = std::ptr::null_mut();
    assert_eq!(
        corewal::ffi::cw_manager_open(c_dir.as_ptr(), &o, &mut m),
        corewal::ffi::CW_OK
    );
    assert_eq!(
        corewal::ffi::cw_manager_backend(m),
        corewal::ffi::cw_backend::CW_BACKEND_SYNC as i32
    );
    // SAFETY: the library returns a valid C string.
    let why = unsafe { std::ffi::CStr::from_ptr(corewal::ffi::cw_manager_backend_reason(m)) };
    assert!(why.to_str().unwrap().contains("COREWAL_DISABLE_IO_URING"));
    assert_eq!(corewal::ffi::cw_manager_close(m), corewal::ffi::CW_OK);
    o.backend = corewal::ffi::cw_backend::CW_BACKEND_IO_URING as i32;
    assert_eq!(
        corewal::ffi::cw_manager_open(c_dir.as_ptr(), &o, &mut m),
        corewal::ffi::CW_ERR_UNSUPPORTED
    );
}
