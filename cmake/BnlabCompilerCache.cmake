# Compiler cache and precompiled headers: builds against the torch headers take
# ~20 s per translation unit without them on a 2-core machine.
#
# ccache and precompiled headers work together only with these "sloppiness"
# settings (ccache manual, "Precompiled headers"): the .gch is rebuilt just before
# the sources that use it, so its mtime/ctime are new, and __TIME__-like macros
# in it must not defeat the cache.
option(BNLAB_USE_CCACHE "Use ccache as the compiler launcher when it is installed" ON)
if(BNLAB_USE_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  find_program(BNLAB_CCACHE_PROGRAM ccache)
  if(BNLAB_CCACHE_PROGRAM)
    set(CMAKE_CXX_COMPILER_LAUNCHER
        ${CMAKE_COMMAND} -E env
        "CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime"
        ${BNLAB_CCACHE_PROGRAM})
    message(STATUS "bnlab: compiling through ccache (${BNLAB_CCACHE_PROGRAM})")
  else()
    message(STATUS "bnlab: ccache not found; building without a compiler cache")
  endif()
endif()

option(BNLAB_USE_PCH "Precompile the torch headers" ON)

# One precompiled header shared (REUSE_FROM) by every bnlab target that includes
# torch. Every target that reuses it must be compiled with the same flags and
# definitions: they all link bnlab_build_flags and we build position independent
# code everywhere (the library is shared).
add_library(bnlab_build_flags INTERFACE)
target_compile_features(bnlab_build_flags INTERFACE cxx_std_17)
# -fPIC also on executables (after CMake's -fPIE, so it wins): GCC refuses a
# precompiled header built with other code-generation settings.
target_compile_options(bnlab_build_flags INTERFACE
  $<$<CXX_COMPILER_ID:GNU,Clang>:-Wall -Wextra -Wno-unused-parameter -Winvalid-pch -fPIC>)

# The precompiled header includes fmt and spdlog: a target that reuses it needs
# their compile definitions (for the header to be valid) and their libraries.
function(bnlab_use_pch target)
  target_link_libraries(${target} PRIVATE fmt::fmt spdlog::spdlog)
  if(BNLAB_USE_PCH)
    target_precompile_headers(${target} REUSE_FROM bnlab_pch)
  endif()
endfunction()
