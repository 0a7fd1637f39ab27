# Install-time part of `cmake --install` (and of cpack): the files whose
# place depends on the install prefix as known at install time, not at
# configure time, so `cpack` (prefix /usr) and `cmake --install` (default
# /usr/local) from the same build both get them right.
#   prefix /usr:     /etc/mqtt2kafka, /lib/systemd/system (Debian 12 layout)
#   other prefixes:  <prefix>/etc/mqtt2kafka, <prefix>/lib/systemd/system
# Set by install(CODE) before this script: M2K_SOURCE_DIR, M2K_BINARY_DIR,
# M2K_SBINDIR (relative to the prefix).
if(CMAKE_INSTALL_PREFIX STREQUAL "/usr")
  set(m2k_etc "/etc/mqtt2kafka")
  set(m2k_units "/lib/systemd/system")
else()
  set(m2k_etc "${CMAKE_INSTALL_PREFIX}/etc/mqtt2kafka")
  set(m2k_units "${CMAKE_INSTALL_PREFIX}/lib/systemd/system")
endif()

# The unit names /usr/sbin and /etc/mqtt2kafka; point it at this install.
file(READ "${M2K_SOURCE_DIR}/systemd/mqtt2kafka.service" m2k_unit)
string(REPLACE "/usr/sbin/mqtt2kafka" "${CMAKE_INSTALL_PREFIX}/${M2K_SBINDIR}/mqtt2kafka"
       m2k_unit "${m2k_unit}")
string(REPLACE "/etc/mqtt2kafka/" "${m2k_etc}/" m2k_unit "${m2k_unit}")
file(MAKE_DIRECTORY "${M2K_BINARY_DIR}/packaging")
file(WRITE "${M2K_BINARY_DIR}/packaging/mqtt2kafka.service" "${m2k_unit}")
file(INSTALL DESTINATION "${m2k_units}" TYPE FILE
     PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
     FILES "${M2K_BINARY_DIR}/packaging/mqtt2kafka.service")

# Never overwrite a configuration an administrator may have edited
# (file(INSTALL) adds DESTDIR itself; the check must add it by hand).
if(EXISTS "$ENV{DESTDIR}${m2k_etc}/mqtt2kafka.yaml")
  message(STATUS "Keeping existing: $ENV{DESTDIR}${m2k_etc}/mqtt2kafka.yaml")
else()
  file(INSTALL DESTINATION "${m2k_etc}" TYPE FILE
       PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ
       FILES "${M2K_SOURCE_DIR}/config/mqtt2kafka.yaml")
endif()
