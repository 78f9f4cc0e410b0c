// The Masterminds/semver oracle for tests/unit/test_versions_masterminds.py. Pinned to the
// release Flux and Helm use; bump it together with MASTERMINDS_SEMVER_VERSION in build.py.
module headwind.sh/testbed/tools/masterminds

go 1.26.0

require github.com/Masterminds/semver/v3 v3.5.0
