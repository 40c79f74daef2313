# vcpkg port for minigpt, a header-only CMake library.
# The install layout this produces (include/minigpt/..., share/minigpt/minigpt{Config,ConfigVersion,Targets}.cmake,
# share/minigpt/copyright) is what tests/consumer/run.cmake installs and builds against.
vcpkg_from_github(
    OUT_SOURCE_PATH SOURCE_PATH
    REPO minigpt/minigpt
    REF "v${VERSION}"
    SHA512 0
    HEAD_REF main
)

vcpkg_cmake_configure(
    SOURCE_PATH "${SOURCE_PATH}"
    OPTIONS
        -DCMAKE_INSTALL_DATADIR=share
        -DMINIGPT_BUILD_TESTS=OFF
        -DMINIGPT_BUILD_EXAMPLES=OFF
        -DMINIGPT_BUILD_BENCH=OFF
)
vcpkg_cmake_install()
vcpkg_cmake_config_fixup(PACKAGE_NAME minigpt CONFIG_PATH share/minigpt)

# Header-only: nothing in lib/ or debug/.
file(REMOVE_RECURSE "${CURRENT_PACKAGES_DIR}/debug" "${CURRENT_PACKAGES_DIR}/lib")
vcpkg_install_copyright(FILE_LIST "${SOURCE_PATH}/LICENSE")
