# ctest script: install minigpt into a private prefix (the layout the vcpkg port produces:
# include/minigpt/..., share/minigpt/minigptConfig*.cmake + targets + backends, share/minigpt/copyright),
# on this machine, where FAISS may be installed, then build and run consumers:
#  - with find_package and FAISS made absent (CMAKE_DISABLE_FIND_PACKAGE_faiss): must build, since
#    a consumer that asks for no backend needs none;
#  - asking for COMPONENTS faiss, REQUIRED and OPTIONAL, with FAISS present and absent;
#  - with add_subdirectory (as FetchContent), whose `cmake --install` must install nothing of minigpt.
# MODEL (optional): a model file the README example consumer generates from.
# HAVE_FAISS: whether this machine has FAISS (minigpt's own configure found it).
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
function(run_fails needle)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "command should have failed: ${ARGN}\n${out}\n${err}")
  endif()
  string(FIND "${out}${err}" "${needle}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "failure without '${needle}': ${ARGN}\n${out}\n${err}")
  endif()
endfunction()

# Same options as ports/minigpt/portfile.cmake.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${WORK_DIR}/lib -G ${GENERATOR}
    -DCMAKE_INSTALL_PREFIX=${prefix} -DCMAKE_INSTALL_DATADIR=share
    -DMINIGPT_BUILD_TESTS=OFF -DMINIGPT_BUILD_EXAMPLES=OFF -DMINIGPT_BUILD_BENCH=OFF)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/lib)
foreach(f include/minigpt/model.hpp include/minigpt/version.hpp share/minigpt/minigptConfig.cmake
          share/minigpt/minigptConfigVersion.cmake share/minigpt/minigptTargets.cmake share/minigpt/minigptBackends.cmake
          share/minigpt/backends/faiss.cmake share/minigpt/copyright)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install layout: missing ${f}")
  endif()
endforeach()
# Nothing in the installed package names FAISS unless a consumer asks for the component.
file(READ ${prefix}/share/minigpt/minigptTargets.cmake targets)
string(FIND "${targets}" "faiss" at)
if(NOT at EQUAL -1)
  message(FATAL_ERROR "minigptTargets.cmake refers to faiss")
endif()

set(model_arg "")
if(DEFINED MODEL AND EXISTS "${MODEL}")
  set(model_arg "${MODEL}")
endif()

# 1. No backend asked for, FAISS absent.
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DCMAKE_DISABLE_FIND_PACKAGE_faiss=ON)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app)
run(${WORK_DIR}/app/consumer ${model_arg})
run(${WORK_DIR}/app/consumer_compiled ${model_arg})  # minigpt_add_library from the installed package

foreach(f share/minigpt/minigptCompiled.cmake include/minigpt/src.hpp)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "install layout: missing ${f}")
  endif()
endforeach()

# 2. The faiss component: REQUIRED fails clearly without FAISS, OPTIONAL leaves minigpt::faiss undefined.
run_fails("component 'faiss'" ${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-faiss-absent -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_FAISS=REQUIRED -DCMAKE_DISABLE_FIND_PACKAGE_faiss=ON)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-faiss-optional -G ${GENERATOR}
    -DCMAKE_PREFIX_PATH=${prefix} -DCONSUMER_FAISS=OPTIONAL -DCMAKE_DISABLE_FIND_PACKAGE_faiss=ON)
if(EXISTS ${WORK_DIR}/app-faiss-optional/consumer_faiss.dir OR EXISTS ${WORK_DIR}/app-faiss-optional/CMakeFiles/consumer_faiss.dir)
  message(FATAL_ERROR "minigpt::faiss defined although FAISS is absent")
endif()
# With FAISS present (when this machine has it), the component builds a FAISS program.
if(HAVE_FAISS)
  run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-faiss -G ${GENERATOR}
      -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release -DCONSUMER_FAISS=REQUIRED)
  run(${CMAKE_COMMAND} --build ${WORK_DIR}/app-faiss --target consumer_faiss)
  run(${WORK_DIR}/app-faiss/consumer_faiss)
endif()

# 3. add_subdirectory: builds, and its install contains the consumer only.
# (No build type, so no optimisation: this checks the packaging, and the Release build above already
# checked the optimised program.)
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/tests/consumer -B ${WORK_DIR}/app-subdir -G ${GENERATOR}
    -DMINIGPT_SOURCE_DIR=${SOURCE_DIR})
run(${CMAKE_COMMAND} --build ${WORK_DIR}/app-subdir --target consumer)
run(${WORK_DIR}/app-subdir/consumer)
run(${CMAKE_COMMAND} --install ${WORK_DIR}/app-subdir --prefix ${WORK_DIR}/app-subdir-prefix)
if(EXISTS ${WORK_DIR}/app-subdir-prefix/include/minigpt OR EXISTS ${WORK_DIR}/app-subdir-prefix/share/minigpt)
  message(FATAL_ERROR "a consumer's install also installed minigpt (MINIGPT_INSTALL must be off when not top-level)")
endif()
if(NOT EXISTS ${WORK_DIR}/app-subdir-prefix/bin/consumer)
  message(FATAL_ERROR "the consumer's install did not install the consumer")
endif()
message(STATUS "consumer builds (find_package without FAISS, compiled once with minigpt_add_library, faiss component, add_subdirectory) passed")
