# Optional backends (FAISS, SQLite, cpp-httplib, hiredis) as opt-in targets minigpt::<name>.
#
# minigpt is header-only, so a backend is nothing but an INTERFACE target: minigpt::minigpt plus the
# backend's library plus MINIGPT_HAVE_<NAME>. Each backend's dependency search lives in
# cmake/backends/<name>.cmake and is run in two places: by minigpt's own build (MINIGPT_<NAME> option,
# for its tests and tools) and by the installed minigptConfig.cmake, only for the components a consumer
# asks for: find_package(minigpt CONFIG REQUIRED COMPONENTS faiss). The install is the same whether or
# not the backends were found where it was made, and a consumer that asks for none needs none of them.
#
# A new backend: add cmake/backends/<name>.cmake (set MINIGPT_BACKEND_LIBS) and its name to
# MINIGPT_KNOWN_BACKENDS; the option, the in-tree target, the install and the component follow.
set(MINIGPT_KNOWN_BACKENDS faiss sqlite httplib redis)

# Defines minigpt::<name> when the backend's dependency is found; sets MINIGPT_HAVE_<NAME> ON/OFF.
# `base` is the core target to build on (minigpt in-tree, minigpt::minigpt from an install).
function(minigpt_add_backend name base imported)
  string(TOUPPER "${name}" upper)
  set(MINIGPT_BACKEND_LIBS "")
  include("${MINIGPT_BACKENDS_DIR}/${name}.cmake")
  if(NOT MINIGPT_BACKEND_LIBS)
    set(MINIGPT_HAVE_${upper} OFF PARENT_SCOPE)
    return()
  endif()
  if(imported)
    if(NOT TARGET minigpt::${name})
      add_library(minigpt::${name} INTERFACE IMPORTED)
      set_target_properties(minigpt::${name} PROPERTIES
        INTERFACE_LINK_LIBRARIES "${base};${MINIGPT_BACKEND_LIBS}"
        INTERFACE_COMPILE_DEFINITIONS "MINIGPT_HAVE_${upper}")
    endif()
  else()
    add_library(minigpt_${name} INTERFACE)
    add_library(minigpt::${name} ALIAS minigpt_${name})
    target_link_libraries(minigpt_${name} INTERFACE ${base} ${MINIGPT_BACKEND_LIBS})
    target_compile_definitions(minigpt_${name} INTERFACE MINIGPT_HAVE_${upper})
  endif()
  set(MINIGPT_HAVE_${upper} ON PARENT_SCOPE)
endfunction()
