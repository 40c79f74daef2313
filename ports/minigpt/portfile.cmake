# vcpkg port for minigpt, a header-only CMake library, installed from a release tarball made by
# scripts/release (which stamps the version and writes the SHA512 below; do not edit it by hand).
# The install layout (include/minigpt/..., share/minigpt/minigpt{Config,ConfigVersion,Targets,Backends}.cmake,
# share/minigpt/backends/, share/minigpt/copyright, share/minigpt/usage) is what tests/consumer/run.cmake
# installs and builds against.
set(MINIGPT_RELEASE_URL "https://github.com/minigpt/minigpt/releases/download/v${VERSION}/minigpt-${VERSION}.tar.gz")
vcpkg_download_distfile(ARCHIVE
    URLS "${MINIGPT_RELEASE_URL}"
    FILENAME "minigpt-${VERSION}.tar.gz"
    SHA512 4b03fb006492e1411c87c0bc1a2dac6699389cde902100f69e4ee7d1b8ae513c53f511906c4d994fe06520ebe2095b1b44ac77f8cc5d9ad4b5ed1600554823bc
)
vcpkg_extract_source_archive(SOURCE_PATH ARCHIVE "${ARCHIVE}")

# The features (faiss, server, cache) only bring the backends' libraries (vcpkg.json); the installed
# files are the same with or without them, and a consumer opts into a backend with
# find_package(minigpt CONFIG REQUIRED COMPONENTS faiss|httplib|sqlite|redis).
vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DCMAKE_INSTALL_DATADIR=share
        -DMINIGPT_INSTALL=ON
        -DMINIGPT_BUILD_TESTS=OFF
        -DMINIGPT_BUILD_EXAMPLES=OFF
        -DMINIGPT_BUILD_BENCH=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME minigpt CONFIG_PATH share/minigpt)

# Header-only: nothing in lib/ or debug/.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
file(INSTALL "${CMAKE_CURRENT_LIST_DIR}/usage" DESTINATION "${CURRENT_PACKAGES_DIR}/share/${PORT}")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
