/* The `mqtt2kafka passwd` subcommand: manages a Mosquitto-format password
 * file (see auth.h).
 *
 *     mqtt2kafka passwd FILE USER       add USER or change its password
 *     mqtt2kafka passwd -D FILE USER    delete USER
 *
 * The password is read from the terminal without echo, twice, when stdin is
 * a terminal; otherwise one line is read from stdin (for scripts). The file
 * is created with mode 0600 if absent; other lines, comments and blank lines
 * are kept byte for byte; the new file replaces the old one atomically (a
 * temporary file in the same directory, fsync, rename) and keeps its mode.
 * A file that does not load (auth_db_load) is never rewritten. */
#ifndef M2K_PASSWD_TOOL_H
#define M2K_PASSWD_TOOL_H

/* argv[0] is the subcommand name ("passwd"), then options and operands.
 * Returns the process exit status: 0 done, 1 failed, 2 usage error. Messages
 * go to stderr. */
int passwd_tool_main(int argc, char **argv);

#endif
