//! velo's whole-system tests live in this package's `system` test binary (`tests/system/`);
//! this library is empty.
