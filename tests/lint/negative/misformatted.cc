// Negative control for the format check: this file is misformatted on purpose.
namespace careloop::lint_negative {
int   Misformatted( int a,int b ){return a+b;}
}  // namespace careloop::lint_negative
