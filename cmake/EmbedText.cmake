# Writes OUT: a C++ source defining NAME (in NAMESPACE) as the text of IN.
file(READ "${IN}" content)
string(FIND "${content}" ")BNLAB_TEXT\"" clash)
if(NOT clash EQUAL -1)
  message(FATAL_ERROR "${IN} contains the raw-string delimiter )BNLAB_TEXT\"")
endif()
file(WRITE "${OUT}.tmp" "// Generated from ${IN} by cmake/EmbedText.cmake.\nnamespace ${NAMESPACE} {\nextern const char* const ${NAME};\nconst char* const ${NAME} = R\"BNLAB_TEXT(${content})BNLAB_TEXT\";\n}  // namespace ${NAMESPACE}\n")
file(RENAME "${OUT}.tmp" "${OUT}")
