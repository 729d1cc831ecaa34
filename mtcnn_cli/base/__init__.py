"""The ground layer: what every other layer may use and nothing of the
package is imported by: the defaults and the version (defaults), atomic
writes and locks (atomic), Ctrl-C and SIGTERM (signals), message text
(text), exit codes (exits) and the command-line error types (errors). No
numpy or OpenCV here: `mtcnn --help` imports this layer."""
