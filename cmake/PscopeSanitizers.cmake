# PS_SANITIZE=address,undefined (or thread) instruments every target of this build.
if(PS_SANITIZE)
  add_compile_options(-fsanitize=${PS_SANITIZE} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${PS_SANITIZE})
  message(STATUS "pscope: sanitizers ${PS_SANITIZE}")
endif()
