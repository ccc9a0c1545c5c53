# Runs bnlab_sink_writer into an emptied DIR (ctest fixture).
file(REMOVE_RECURSE "${DIR}")
file(MAKE_DIRECTORY "${DIR}")
execute_process(COMMAND "${WRITER}" "${DIR}" RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "bnlab_sink_writer failed (${rc})")
endif()
