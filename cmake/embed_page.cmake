# Turns the gateway's status page (one HTML file with one inline <script>
# and one inline <style>) into a C file: its bytes, and a
# Content-Security-Policy that lets exactly that script and that style run,
# by their SHA-256 (CSP Level 2 hash sources), and nothing else.
#   cmake -DIN=src/gateway/status.html -DOUT=file.c -P embed_page.cmake

# base64 of the bytes a hex string spells, as CSP hash sources want them.
function(hex_to_base64 hex outvar)
  set(abc "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
  string(LENGTH "${hex}" n)
  set(out "")
  set(i 0)
  while(i LESS n)
    math(EXPR left "${n} - ${i}")
    set(take 6)
    if(left LESS 6)
      set(take ${left})
    endif()
    string(SUBSTRING "${hex}" ${i} ${take} chunk)
    string(LENGTH "${chunk}" got)
    while(got LESS 6)
      string(APPEND chunk "0")
      math(EXPR got "${got} + 1")
    endwhile()
    math(EXPR v "0x${chunk}")
    # 3 bytes make 4 characters; 2 make 3 and "=", 1 makes 2 and "==".
    math(EXPR chars "${take} / 2 + 1")
    set(k 0)
    foreach(shift 18 12 6 0)
      if(k LESS chars)
        math(EXPR idx "(${v} >> ${shift}) & 63")
        string(SUBSTRING "${abc}" ${idx} 1 c)
        string(APPEND out "${c}")
      else()
        string(APPEND out "=")
      endif()
      math(EXPR k "${k} + 1")
    endforeach()
    math(EXPR i "${i} + 6")
  endwhile()
  set(${outvar} "${out}" PARENT_SCOPE)
endfunction()

# 'sha256-...' of the text between <TAG> and </TAG>, the only such element.
function(hash_source html tag outvar)
  string(FIND "${html}" "<${tag}>" open)
  string(FIND "${html}" "</${tag}>" close)
  string(FIND "${html}" "<${tag}" last REVERSE)
  if(open LESS 0 OR close LESS open OR NOT last EQUAL open)
    message(FATAL_ERROR "${IN}: expected exactly one <${tag}> ... </${tag}> (bare tag, no "
                        "attributes): its hash goes into the Content-Security-Policy")
  endif()
  string(LENGTH "<${tag}>" skip)
  math(EXPR from "${open} + ${skip}")
  math(EXPR len "${close} - ${from}")
  string(SUBSTRING "${html}" ${from} ${len} text)
  string(SHA256 hex "${text}")
  hex_to_base64("${hex}" b64)
  set(${outvar} "'sha256-${b64}'" PARENT_SCOPE)
endfunction()

file(READ ${IN} html)
# CMake's string functions count bytes, and so does the hash: keep the page
# ASCII (entities in HTML, \u escapes in the script) so nothing depends on it.
string(REGEX MATCH "[^\t\n\r -~]" wide "${html}")
if(NOT wide STREQUAL "")
  message(FATAL_ERROR "${IN}: only printable ASCII, tabs and newlines, please")
endif()
hash_source("${html}" script script_hash)
hash_source("${html}" style style_hash)
string(CONCAT csp "default-src 'self'; script-src ${script_hash}; style-src ${style_hash}; "
       "base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

file(READ ${IN} hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR nbytes "${nhex} / 2")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," hex "${hex}")
set(body "/* Generated from ${IN} by cmake/embed_page.cmake. Do not edit. */\n")
string(APPEND body "#include \"gateway/page.h\"\n\n")
string(APPEND body "const char gw_page_html[] = {${hex}0x00};\n")
string(APPEND body "const size_t gw_page_html_len = ${nbytes};\n")
string(APPEND body "const char gw_page_csp[] = \"${csp}\";\n")
file(WRITE ${OUT}.tmp "${body}")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different ${OUT}.tmp ${OUT})
