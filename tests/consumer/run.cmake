# ctest script: install minigpt into a private prefix (the layout the vcpkg port produces:
# include/minigpt/..., share/minigpt/minigptConfig*.cmake + targets, share/minigpt/copyright),
# then build and run a consumer with find_package, and another with add_subdirectory.
foreach(v SOURCE_DIR WORK_DIR GENERATOR)
  if(NOT DEFINED ${v})
    message(FATAL_ERROR "${v} not set")
  endif()
endforeach()
file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)

function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "command failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

# Same options as ports/minigpt/portfile.cmake.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib -G ${GENERATOR}
    -DCMAKE_INSTALL_PREFIX=${prefix} -DCMAKE_INSTALL_DATADIR=share
    -DMINIGPT_BUILD_TESTS=OFF -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib)
foreach(f include/minigpt/model.hpp share/minigpt/minigptConfig.cmake share/minigpt/minigptConfigVersion.cmake
          share/minigpt/minigptTargets.cmake share/minigpt/copyright)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install layout: missing ${f}")
  endif()
endforeach()

run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app)
run(${WORK_DIR}/app/consumer)

run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-subdir -G ${GENERATOR}
    -DMINIGPT_SOURCE_DIR=${SOURCE_DIR} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app-subdir)
run(${WORK_DIR}/app-subdir/consumer)
message(STATUS "consumer builds (find_package and add_subdirectory) passed")
